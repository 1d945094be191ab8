//! [`ModuleBuilder`]: one Verilog-2005 module built item by item, checked as it is built, and
//! rendered as a file that reads as if written by hand.
//!
//! Checked at generation time: identifiers (plain, not reserved words), duplicate names, zero
//! widths, use of undeclared signals and out-of-range slices in typed expressions, literal overflow,
//! `assign` width agreement and target kind, and every connection of an instance (each port exactly
//! once, widths equal, outputs driving declared wires). Procedural code (`always` bodies) is text.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::code::{Code, INDENT};
use super::expr::{Expr, Sig, range};
use crate::error::{HdlError, Result};

/// Port direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    Input,
    Output,
}

impl Dir {
    pub const fn keyword(self) -> &'static str {
        match self {
            Dir::Input => "input",
            Dir::Output => "output",
        }
    }
}

/// A module port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    pub dir: Dir,
    pub width: u32,
    pub signed: bool,
}

/// What a module looks like from outside: what an instance is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub ports: Vec<Port>,
}

impl Interface {
    pub fn port(&self, name: &str) -> Option<&Port> {
        self.ports.iter().find(|p| p.name == name)
    }
}

/// A finished module: its interface and its text (without the file header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub interface: Interface,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Port(Dir),
    Wire,
    Reg,
    Localparam,
    Instance,
}

#[derive(Debug, Clone)]
enum PortItem {
    Group(String),
    Port(Port, Option<String>),
    /// A Verilator metacomment between port declarations (a scoped waiver).
    Pragma(String),
}

#[derive(Debug, Clone)]
enum Item {
    Blank,
    Comment(Vec<String>),
    Localparam {
        sig: Sig,
        value: Expr,
        comment: Option<String>,
    },
    Net {
        kind: Kind,
        sig: Sig,
        comment: Option<String>,
    },
    Assign {
        lhs: String,
        rhs: String,
    },
    AlwaysFf {
        clock: String,
        body: Code,
    },
    AlwaysComb(Code),
    Instance {
        of: String,
        name: String,
        conns: Vec<(String, String)>,
    },
    Pragma(String),
}

/// Builds one module. Every method that declares or uses a name checks it.
#[derive(Debug)]
pub struct ModuleBuilder {
    name: String,
    doc: Vec<String>,
    ports: Vec<PortItem>,
    items: Vec<Item>,
    names: BTreeMap<String, (Kind, Sig)>,
}

const KEYWORDS: &[&str] = &[
    "always",
    "and",
    "assign",
    "automatic",
    "begin",
    "buf",
    "case",
    "casex",
    "casez",
    "cell",
    "config",
    "deassign",
    "default",
    "defparam",
    "design",
    "disable",
    "edge",
    "else",
    "end",
    "endcase",
    "endconfig",
    "endfunction",
    "endgenerate",
    "endmodule",
    "endprimitive",
    "endspecify",
    "endtable",
    "endtask",
    "event",
    "for",
    "force",
    "forever",
    "fork",
    "function",
    "generate",
    "genvar",
    "if",
    "initial",
    "inout",
    "input",
    "integer",
    "join",
    "localparam",
    "logic",
    "module",
    "nand",
    "negedge",
    "nor",
    "not",
    "or",
    "output",
    "parameter",
    "posedge",
    "real",
    "reg",
    "release",
    "repeat",
    "signed",
    "specify",
    "supply0",
    "supply1",
    "table",
    "task",
    "time",
    "tri",
    "unsigned",
    "wait",
    "while",
    "wire",
    "wor",
    "xnor",
    "xor",
];

fn identifier_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Some("empty"),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return Some("must start with a letter or `_`");
        }
        _ => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Some("only letters, digits and `_` are allowed");
    }
    if KEYWORDS.contains(&name) {
        return Some("reserved word");
    }
    None
}

impl ModuleBuilder {
    /// Starts a module; its name is also its file name (`<name>.v`).
    pub fn new(name: &str) -> Result<ModuleBuilder> {
        if let Some(why) = identifier_problem(name) {
            return Err(HdlError::BadIdentifier {
                module: name.to_owned(),
                name: name.to_owned(),
                why,
            });
        }
        Ok(ModuleBuilder {
            name: name.to_owned(),
            doc: Vec::new(),
            ports: Vec::new(),
            items: Vec::new(),
            names: BTreeMap::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds lines to the comment block above `module`.
    pub fn doc(&mut self, lines: &[&str]) -> &mut Self {
        self.doc.extend(lines.iter().map(|l| (*l).to_owned()));
        self
    }

    /// Adds one line to the comment block above `module`.
    pub fn doc_line(&mut self, line: impl Into<String>) -> &mut Self {
        self.doc.push(line.into());
        self
    }

    fn declare(&mut self, kind: Kind, name: &str, width: u32, signed: bool) -> Result<Sig> {
        if let Some(why) = identifier_problem(name) {
            return Err(HdlError::BadIdentifier {
                module: self.name.clone(),
                name: name.to_owned(),
                why,
            });
        }
        if width == 0 {
            return Err(HdlError::ZeroWidth {
                module: self.name.clone(),
                name: name.to_owned(),
            });
        }
        if self.names.contains_key(name) {
            return Err(HdlError::DuplicateName {
                module: self.name.clone(),
                name: name.to_owned(),
            });
        }
        let sig = Sig {
            name: name.to_owned(),
            width,
            signed,
        };
        self.names.insert(name.to_owned(), (kind, sig.clone()));
        Ok(sig)
    }

    /// A comment line between groups of ports.
    pub fn port_group(&mut self, comment: impl Into<String>) -> &mut Self {
        self.ports.push(PortItem::Group(comment.into()));
        self
    }

    /// An unsigned port.
    pub fn port(&mut self, dir: Dir, name: &str, width: u32) -> Result<Sig> {
        self.port_full(dir, name, width, false, None)
    }

    /// A port with a trailing comment (why it has this width, what it carries).
    pub fn port_doc(&mut self, dir: Dir, name: &str, width: u32, comment: &str) -> Result<Sig> {
        self.port_full(dir, name, width, false, Some(comment.to_owned()))
    }

    /// Any port.
    pub fn port_full(
        &mut self,
        dir: Dir,
        name: &str,
        width: u32,
        signed: bool,
        comment: Option<String>,
    ) -> Result<Sig> {
        let sig = self.declare(Kind::Port(dir), name, width, signed)?;
        self.ports.push(PortItem::Port(
            Port {
                name: name.to_owned(),
                dir,
                width,
                signed,
            },
            comment,
        ));
        Ok(sig)
    }

    /// An empty line in the body.
    pub fn blank(&mut self) -> &mut Self {
        self.items.push(Item::Blank);
        self
    }

    /// A `// ---- title ----` section heading, preceded by an empty line.
    pub fn section(&mut self, title: &str) -> &mut Self {
        self.items.push(Item::Blank);
        self.items
            .push(Item::Comment(vec![format!("---- {title} ----")]));
        self
    }

    /// Comment lines in the body.
    pub fn comment(&mut self, lines: &[&str]) -> &mut Self {
        self.items.push(Item::Comment(
            lines.iter().map(|l| (*l).to_owned()).collect(),
        ));
        self
    }

    /// `localparam [w-1:0] NAME = value;`
    pub fn localparam(&mut self, name: &str, value: Expr, comment: Option<String>) -> Result<Sig> {
        let width = self.check(&value)?;
        let sig = self.declare(Kind::Localparam, name, width, false)?;
        self.items.push(Item::Localparam {
            sig: sig.clone(),
            value,
            comment,
        });
        Ok(sig)
    }

    /// A `wire` of `width` bits.
    pub fn wire(&mut self, name: &str, width: u32, comment: Option<&str>) -> Result<Sig> {
        self.net(Kind::Wire, name, width, comment)
    }

    /// A `reg` of `width` bits: a flop (`_q`) or a combinational `_d` value.
    pub fn reg(&mut self, name: &str, width: u32, comment: Option<&str>) -> Result<Sig> {
        self.net(Kind::Reg, name, width, comment)
    }

    fn net(&mut self, kind: Kind, name: &str, width: u32, comment: Option<&str>) -> Result<Sig> {
        let sig = self.declare(kind, name, width, false)?;
        self.items.push(Item::Net {
            kind,
            sig: sig.clone(),
            comment: comment.map(str::to_owned),
        });
        Ok(sig)
    }

    /// The ports declared so far, in order.
    pub fn ports(&self) -> Vec<Port> {
        self.ports
            .iter()
            .filter_map(|p| match p {
                PortItem::Port(p, _) => Some(p.clone()),
                PortItem::Group(_) | PortItem::Pragma(_) => None,
            })
            .collect()
    }

    /// A declared signal (port, wire or reg) by name.
    pub fn sig(&self, name: &str) -> Result<Sig> {
        match self.names.get(name) {
            Some((kind, sig)) if *kind != Kind::Instance => Ok(sig.clone()),
            _ => Err(HdlError::Undeclared {
                module: self.name.clone(),
                name: name.to_owned(),
            }),
        }
    }

    /// Checks an expression against this module's declarations; returns its width.
    pub fn check(&self, e: &Expr) -> Result<u32> {
        match e {
            Expr::Sig(s) => self.check_sig(s).map(|()| s.width),
            Expr::Slice { sig, msb, lsb } => {
                self.check_sig(sig)?;
                if msb < lsb || *msb >= sig.width {
                    return Err(HdlError::BadSlice {
                        module: self.name.clone(),
                        name: sig.name.clone(),
                        msb: *msb,
                        lsb: *lsb,
                        width: sig.width,
                    });
                }
                Ok(msb - lsb + 1)
            }
            Expr::Lit { width, value } => {
                if *width == 0 {
                    return Err(HdlError::ZeroWidth {
                        module: self.name.clone(),
                        name: e.to_string(),
                    });
                }
                if *width < 64 && value >> width != 0 {
                    return Err(HdlError::LiteralOverflow {
                        module: self.name.clone(),
                        value: *value,
                        width: *width,
                    });
                }
                Ok(*width)
            }
            Expr::Concat(parts) => {
                let mut w = 0;
                for p in parts {
                    w += self.check(p)?;
                }
                if w == 0 {
                    return Err(HdlError::ZeroWidth {
                        module: self.name.clone(),
                        name: e.to_string(),
                    });
                }
                Ok(w)
            }
            Expr::Raw { width, text } => {
                if *width == 0 {
                    return Err(HdlError::ZeroWidth {
                        module: self.name.clone(),
                        name: text.clone(),
                    });
                }
                Ok(*width)
            }
        }
    }

    fn check_sig(&self, s: &Sig) -> Result<()> {
        match self.names.get(&s.name) {
            Some((kind, declared)) if declared == s && *kind != Kind::Instance => Ok(()),
            _ => Err(HdlError::Undeclared {
                module: self.name.clone(),
                name: s.name.clone(),
            }),
        }
    }

    /// `assign lhs = rhs;` — `lhs` must be a wire or an output port of this module, and both sides
    /// must have the same width.
    pub fn assign(&mut self, lhs: &Sig, rhs: impl Into<Expr>) -> Result<()> {
        let rhs = rhs.into();
        self.check_sig(lhs)?;
        let why = match self.names.get(&lhs.name).map(|(k, _)| *k) {
            Some(Kind::Wire | Kind::Port(Dir::Output)) => None,
            Some(Kind::Reg) => Some("it is a reg; drive it from an always block"),
            Some(Kind::Port(Dir::Input)) => Some("it is an input port"),
            Some(Kind::Localparam) => Some("it is a localparam"),
            Some(Kind::Instance) | None => Some("it is an instance"),
        };
        if let Some(why) = why {
            return Err(HdlError::NotAssignable {
                module: self.name.clone(),
                name: lhs.name.clone(),
                why,
            });
        }
        let found = self.check(&rhs)?;
        if found != lhs.width {
            return Err(HdlError::AssignWidth {
                module: self.name.clone(),
                lhs: lhs.name.clone(),
                expected: lhs.width,
                rhs: rhs.to_string(),
                found,
            });
        }
        self.items.push(Item::Assign {
            lhs: lhs.name.clone(),
            rhs: rhs.to_string(),
        });
        Ok(())
    }

    /// A memory, `reg [w-1:0] name [0:depth-1];`: an inferred RAM (or register file) read and
    /// written only inside always blocks, so its uses are not width-checked here.
    pub fn memory(&mut self, name: &str, width: u32, depth: u32, comment: &str) -> Result<()> {
        if depth == 0 {
            return Err(HdlError::ZeroWidth {
                module: self.name.clone(),
                name: name.to_owned(),
            });
        }
        self.declare(Kind::Reg, name, width, false)?;
        self.items.push(Item::Pragma(format!(
            "reg  {} {name} [0:{}];  // {comment}",
            type_range(false, width),
            depth - 1
        )));
        Ok(())
    }

    /// A [`ModuleBuilder::memory`] that synthesis must build from LUT RAM (`ram_style =
    /// "distributed"`): its read is asynchronous-fast, for a memory whose read feeds logic in the
    /// same cycle as a block RAM's slow clock-to-output would not allow.
    pub fn memory_distributed(
        &mut self,
        name: &str,
        width: u32,
        depth: u32,
        comment: &str,
    ) -> Result<()> {
        self.memory(name, width, depth, comment)?;
        if let Some(Item::Pragma(text)) = self.items.last_mut() {
            *text = format!("(* ram_style = \"distributed\" *) {text}");
        }
        Ok(())
    }

    /// `assign name = rhs;` for a declared wire or output port, with `rhs` as text of the name's
    /// width (for expressions the typed [`Expr`] cannot state; Verilator checks them).
    pub fn assign_raw(&mut self, name: &str, rhs: impl Into<String>) -> Result<()> {
        let sig = match self.names.get(name) {
            Some((_, sig)) => sig.clone(),
            None => {
                return Err(HdlError::Undeclared {
                    module: self.name.clone(),
                    name: name.to_owned(),
                });
            }
        };
        let width = sig.width;
        self.assign(&sig, Expr::raw(rhs.into(), width))
    }

    /// A wire declared and driven in one step: `wire [w] name; assign name = rhs;`.
    pub fn wire_assign(
        &mut self,
        name: &str,
        rhs: impl Into<Expr>,
        comment: Option<&str>,
    ) -> Result<Sig> {
        let rhs = rhs.into();
        let width = self.check(&rhs)?;
        let sig = self.wire(name, width, comment)?;
        self.assign(&sig, rhs)?;
        Ok(sig)
    }

    /// `always @(posedge clock) begin <body> end`.
    pub fn always_ff(&mut self, clock: &Sig, body: Code) -> Result<()> {
        self.check_sig(clock)?;
        self.items.push(Item::AlwaysFf {
            clock: clock.name.clone(),
            body,
        });
        Ok(())
    }

    /// `always @(*) begin <body> end`; the body must assign every target on every path (start it
    /// with defaults) so that no latch is inferred.
    pub fn always_comb(&mut self, body: Code) {
        self.items.push(Item::AlwaysComb(body));
    }

    /// A scoped Verilator waiver over the port declarations that follow, with its reason; ended
    /// by [`ModuleBuilder::port_lint_on`].
    pub fn port_lint_off(&mut self, rule: &str, reason: &str) -> &mut Self {
        self.ports
            .push(PortItem::Group(format!("Waiver ({rule}): {reason}")));
        self.ports
            .push(PortItem::Pragma(format!("/* verilator lint_off {rule} */")));
        self
    }

    /// Ends a port-list waiver.
    pub fn port_lint_on(&mut self, rule: &str) -> &mut Self {
        self.ports
            .push(PortItem::Pragma(format!("/* verilator lint_on {rule} */")));
        self
    }

    /// A scoped Verilator waiver: `/* verilator lint_off RULE */` with its reason, `lint_on` by
    /// [`ModuleBuilder::lint_on`].
    pub fn lint_off(&mut self, rule: &str, reason: &str) -> &mut Self {
        self.items
            .push(Item::Comment(vec![format!("Waiver ({rule}): {reason}")]));
        self.items
            .push(Item::Pragma(format!("/* verilator lint_off {rule} */")));
        self
    }

    /// Ends a waiver.
    pub fn lint_on(&mut self, rule: &str) -> &mut Self {
        self.items
            .push(Item::Pragma(format!("/* verilator lint_on {rule} */")));
        self
    }

    /// An instance of `of`. Every port must be connected exactly once, with an expression of the
    /// port's width; outputs must drive whole wires of this module.
    pub fn instance(&mut self, of: &Interface, name: &str, conns: Vec<(&str, Expr)>) -> Result<()> {
        let err_conn = |port: &str, problem| HdlError::PortConnection {
            module: self.name.clone(),
            instance: name.to_owned(),
            of: of.name.clone(),
            port: port.to_owned(),
            problem,
        };
        let mut by_port: BTreeMap<&str, Expr> = BTreeMap::new();
        for (port, expr) in conns {
            let Some(p) = of.port(port) else {
                return Err(HdlError::UnknownPort {
                    module: self.name.clone(),
                    instance: name.to_owned(),
                    of: of.name.clone(),
                    port: port.to_owned(),
                });
            };
            let found = self.check(&expr)?;
            if found != p.width {
                return Err(HdlError::WidthMismatch {
                    instance: format!("module `{}`, instance `{name}` of `{}`", self.name, of.name),
                    port: port.to_owned(),
                    expected: p.width,
                    found,
                    expr: expr.to_string(),
                });
            }
            if p.dir == Dir::Output {
                let drivable = matches!(&expr, Expr::Sig(s)
                    if matches!(self.names.get(&s.name), Some((Kind::Wire | Kind::Port(Dir::Output), _))));
                if !drivable {
                    return Err(HdlError::UndrivableOutput {
                        module: self.name.clone(),
                        instance: name.to_owned(),
                        port: port.to_owned(),
                        expr: expr.to_string(),
                    });
                }
            }
            if by_port.insert(port, expr).is_some() {
                return Err(err_conn(port, "is connected twice"));
            }
        }
        let mut ordered = Vec::with_capacity(of.ports.len());
        for p in &of.ports {
            match by_port.get(p.name.as_str()) {
                Some(e) => ordered.push((p.name.clone(), e.to_string())),
                None => return Err(err_conn(&p.name, "is not connected")),
            }
        }
        // Instance names share the module's namespace.
        self.declare(Kind::Instance, name, 1, false)?;
        self.items.push(Item::Instance {
            of: of.name.clone(),
            name: name.to_owned(),
            conns: ordered,
        });
        Ok(())
    }

    /// Renders the module (without the file header).
    pub fn finish(self) -> Module {
        let ports: Vec<Port> = self
            .ports
            .iter()
            .filter_map(|p| match p {
                PortItem::Port(p, _) => Some(p.clone()),
                PortItem::Group(_) | PortItem::Pragma(_) => None,
            })
            .collect();
        let mut out = String::new();
        for l in &self.doc {
            push_comment(&mut out, "", l);
        }
        self.render_ports(&mut out);
        self.render_items(&mut out);
        out.push_str("\nendmodule\n");
        Module {
            interface: Interface {
                name: self.name,
                ports,
            },
            text: out,
        }
    }

    fn render_ports(&self, out: &mut String) {
        let range_w = self
            .ports
            .iter()
            .filter_map(|p| match p {
                PortItem::Port(p, _) => Some(type_range(p.signed, p.width).len()),
                PortItem::Group(_) | PortItem::Pragma(_) => None,
            })
            .max()
            .unwrap_or(0);
        let n = self
            .ports
            .iter()
            .filter(|p| matches!(p, PortItem::Port(..)))
            .count();
        let _ = writeln!(out, "module {} (", self.name);
        let mut seen = 0;
        for item in &self.ports {
            match item {
                PortItem::Group(c) => push_comment(out, INDENT, c),
                PortItem::Pragma(p) => {
                    let _ = writeln!(out, "{INDENT}{p}");
                }
                PortItem::Port(p, comment) => {
                    seen += 1;
                    let sep = if seen == n { "" } else { "," };
                    let mut line = format!(
                        "{INDENT}{:<6} wire {:<range_w$} {}{sep}",
                        p.dir.keyword(),
                        type_range(p.signed, p.width),
                        p.name,
                    );
                    if let Some(c) = comment {
                        line = format!("{line}  // {c}");
                    }
                    out.push_str(line.trim_end());
                    out.push('\n');
                }
            }
        }
        out.push_str(");\n");
    }

    fn render_items(&self, out: &mut String) {
        let range_w = self
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Net { sig, .. } | Item::Localparam { sig, .. } => {
                    Some(type_range(sig.signed, sig.width).len())
                }
                _ => None,
            })
            .max()
            .unwrap_or(0);
        for item in &self.items {
            match item {
                Item::Blank => out.push('\n'),
                Item::Comment(lines) => {
                    for l in lines {
                        push_comment(out, INDENT, l);
                    }
                }
                Item::Pragma(p) => {
                    let _ = writeln!(out, "{INDENT}{p}");
                }
                Item::Localparam {
                    sig,
                    value,
                    comment,
                } => {
                    let line = format!(
                        "{INDENT}localparam {:<range_w$} {} = {value};",
                        type_range(sig.signed, sig.width),
                        sig.name
                    );
                    push_with_comment(out, line, comment.as_deref());
                }
                Item::Net { kind, sig, comment } => {
                    let kw = if *kind == Kind::Reg { "reg " } else { "wire" };
                    let line = format!(
                        "{INDENT}{kw} {:<range_w$} {};",
                        type_range(sig.signed, sig.width),
                        sig.name
                    );
                    push_with_comment(out, line, comment.as_deref());
                }
                Item::Assign { lhs, rhs } => {
                    let _ = writeln!(out, "{INDENT}assign {lhs} = {rhs};");
                }
                Item::AlwaysFf { clock, body } => {
                    let _ = writeln!(out, "{INDENT}always @(posedge {clock}) begin");
                    body.render(2, out);
                    let _ = writeln!(out, "{INDENT}end");
                }
                Item::AlwaysComb(body) => {
                    let _ = writeln!(out, "{INDENT}always @(*) begin");
                    body.render(2, out);
                    let _ = writeln!(out, "{INDENT}end");
                }
                Item::Instance { of, name, conns } => {
                    let w = conns.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
                    let _ = writeln!(out, "{INDENT}{of} {name} (");
                    for (i, (port, expr)) in conns.iter().enumerate() {
                        let sep = if i + 1 == conns.len() { "" } else { "," };
                        let _ = writeln!(out, "{INDENT}{INDENT}.{port:<w$} ({expr}){sep}");
                    }
                    let _ = writeln!(out, "{INDENT});");
                }
            }
        }
    }
}

fn type_range(signed: bool, width: u32) -> String {
    match (signed, width) {
        (true, _) => format!("signed {}", range(width)),
        (false, _) => range(width),
    }
}

fn push_comment(out: &mut String, indent: &str, text: &str) {
    if text.is_empty() {
        let _ = writeln!(out, "{indent}//");
    } else {
        let _ = writeln!(out, "{indent}// {text}");
    }
}

fn push_with_comment(out: &mut String, line: String, comment: Option<&str>) {
    let line = match comment {
        Some(c) => format!("{line}  // {c}"),
        None => line,
    };
    out.push_str(line.trim_end());
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub() -> Interface {
        let mut m = ModuleBuilder::new("sub").unwrap();
        m.port(Dir::Input, "a_i", 8).unwrap();
        m.port(Dir::Output, "y_o", 4).unwrap();
        m.finish().interface
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let mut m = ModuleBuilder::new("top").unwrap();
        m.port(Dir::Input, "clk", 1).unwrap();
        let e = m.wire("clk", 1, None).unwrap_err();
        assert!(matches!(e, HdlError::DuplicateName { .. }), "{e}");
        assert!(e.to_string().contains("`clk` is declared twice"), "{e}");
    }

    #[test]
    fn zero_widths_keywords_and_bad_identifiers_are_rejected() {
        let mut m = ModuleBuilder::new("top").unwrap();
        assert!(matches!(
            m.wire("w", 0, None),
            Err(HdlError::ZeroWidth { .. })
        ));
        assert!(matches!(
            m.wire("reg", 1, None),
            Err(HdlError::BadIdentifier { .. })
        ));
        assert!(matches!(
            m.wire("3x", 1, None),
            Err(HdlError::BadIdentifier { .. })
        ));
        assert!(ModuleBuilder::new("has space").is_err());
    }

    #[test]
    fn assign_checks_width_kind_and_declaration() {
        let mut m = ModuleBuilder::new("top").unwrap();
        let a = m.port(Dir::Input, "a", 8).unwrap();
        let y = m.port(Dir::Output, "y", 4).unwrap();
        let r = m.reg("r_q", 4, None).unwrap();
        let e = m.assign(&y, &a).unwrap_err();
        assert!(
            matches!(
                e,
                HdlError::AssignWidth {
                    expected: 4,
                    found: 8,
                    ..
                }
            ),
            "{e}"
        );
        assert!(matches!(
            m.assign(&r, a.slice(3, 0)),
            Err(HdlError::NotAssignable { .. })
        ));
        assert!(matches!(
            m.assign(&a, a.clone()),
            Err(HdlError::NotAssignable { .. })
        ));
        assert!(matches!(
            m.assign(&y, a.slice(8, 5)),
            Err(HdlError::BadSlice { .. })
        ));
        assert!(matches!(
            m.assign(&y, Expr::lit(4, 16)),
            Err(HdlError::LiteralOverflow { .. })
        ));
        let ghost = Sig {
            name: "ghost".into(),
            width: 4,
            signed: false,
        };
        assert!(matches!(
            m.assign(&y, ghost),
            Err(HdlError::Undeclared { .. })
        ));
        m.assign(&y, a.slice(7, 4)).unwrap();
        let text = m.finish().text;
        assert!(text.contains("assign y = a[7:4];"), "{text}");
    }

    #[test]
    fn instance_port_widths_must_match() {
        let sub = sub();
        let mut m = ModuleBuilder::new("top").unwrap();
        let a = m.port(Dir::Input, "a", 4).unwrap();
        let y = m.wire("y", 4, None).unwrap();
        let e = m
            .instance(&sub, "u_sub", vec![("a_i", a.expr()), ("y_o", y.expr())])
            .unwrap_err();
        assert!(
            matches!(&e, HdlError::WidthMismatch { port, expected: 8, found: 4, .. } if port == "a_i"),
            "{e}"
        );
        assert!(e.to_string().contains("u_sub"), "{e}");
    }

    #[test]
    fn instance_ports_must_be_connected_once_and_exist() {
        let sub = sub();
        let mut m = ModuleBuilder::new("top").unwrap();
        let a = m.port(Dir::Input, "a", 8).unwrap();
        let y = m.wire("y", 4, None).unwrap();
        let missing = m.instance(&sub, "u_sub", vec![("a_i", a.expr())]);
        assert!(matches!(missing, Err(HdlError::PortConnection { .. })));
        let unknown = m.instance(&sub, "u_sub", vec![("b_i", a.expr())]);
        assert!(matches!(unknown, Err(HdlError::UnknownPort { .. })));
        let twice = m.instance(
            &sub,
            "u_sub",
            vec![("a_i", a.expr()), ("a_i", a.expr()), ("y_o", y.expr())],
        );
        assert!(matches!(twice, Err(HdlError::PortConnection { .. })));
        let undrivable = m.instance(
            &sub,
            "u_sub",
            vec![("a_i", a.expr()), ("y_o", Expr::zero(4))],
        );
        assert!(matches!(undrivable, Err(HdlError::UndrivableOutput { .. })));
        m.instance(&sub, "u_sub", vec![("y_o", y.expr()), ("a_i", a.expr())])
            .unwrap();
        let dup = m.instance(&sub, "u_sub", vec![("a_i", a.expr()), ("y_o", y.expr())]);
        assert!(matches!(dup, Err(HdlError::DuplicateName { .. })));
        let text = m.finish().text;
        assert!(
            text.contains("    sub u_sub (\n        .a_i (a),\n        .y_o (y)\n    );"),
            "{text}"
        );
    }

    #[test]
    fn ports_render_aligned_in_declaration_order() {
        let mut m = ModuleBuilder::new("top").unwrap();
        m.port(Dir::Input, "clk", 1).unwrap();
        m.port_group("bus");
        m.port_doc(Dir::Output, "data", 32, "one word").unwrap();
        let text = m.finish().text;
        assert_eq!(
            text,
            "module top (\n    input  wire        clk,\n    // bus\n    output wire [31:0] data  // one word\n);\n\nendmodule\n"
        );
    }
}
