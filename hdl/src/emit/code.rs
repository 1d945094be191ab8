//! [`Code`]: the text of an `always` block body, written line by line with managed indentation.
//!
//! Procedural code is kept as text (the IR does not model statements); these helpers only make the
//! indentation and `begin`/`end` pairing impossible to get wrong.

/// Indentation unit of every generated file.
pub const INDENT: &str = "    ";

/// Lines of procedural Verilog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Code {
    lines: Vec<String>,
    depth: usize,
}

impl Code {
    pub fn new() -> Code {
        Code::default()
    }

    /// One statement or comment at the current depth.
    pub fn line(&mut self, text: impl AsRef<str>) -> &mut Code {
        let text = text.as_ref();
        if text.is_empty() {
            self.lines.push(String::new());
        } else {
            self.lines
                .push(format!("{}{text}", INDENT.repeat(self.depth)));
        }
        self
    }

    /// A `// comment` line.
    pub fn comment(&mut self, text: impl AsRef<str>) -> &mut Code {
        self.line(format!("// {}", text.as_ref()))
    }

    /// `<head> begin`, then the body one level deeper, then `end`.
    pub fn block(&mut self, head: impl AsRef<str>, body: impl FnOnce(&mut Code)) -> &mut Code {
        self.line(format!("{} begin", head.as_ref()));
        self.depth += 1;
        body(self);
        self.depth -= 1;
        self.line("end")
    }

    /// `<head>` (a `case (...)` statement, possibly after `else`), the items one level deeper,
    /// then `endcase`.
    pub fn case_block(&mut self, head: impl AsRef<str>, body: impl FnOnce(&mut Code)) -> &mut Code {
        self.line(head.as_ref());
        self.depth += 1;
        body(self);
        self.depth -= 1;
        self.line("endcase")
    }

    /// `if (<cond>) begin ... end`.
    pub fn if_(&mut self, cond: impl AsRef<str>, body: impl FnOnce(&mut Code)) -> &mut Code {
        self.block(format!("if ({})", cond.as_ref()), body)
    }

    /// `if (<cond>) begin ... end else begin ... end`.
    pub fn if_else(
        &mut self,
        cond: impl AsRef<str>,
        then: impl FnOnce(&mut Code),
        otherwise: impl FnOnce(&mut Code),
    ) -> &mut Code {
        self.line(format!("if ({}) begin", cond.as_ref()));
        self.depth += 1;
        then(self);
        self.depth -= 1;
        self.line("end else begin");
        self.depth += 1;
        otherwise(self);
        self.depth -= 1;
        self.line("end")
    }

    /// Continues the `if` just closed: its `end` becomes `end else if (<cond>) begin`. Without a
    /// preceding `end` the branch starts as a plain `if`.
    pub fn else_if(&mut self, cond: impl AsRef<str>, body: impl FnOnce(&mut Code)) -> &mut Code {
        let pad = INDENT.repeat(self.depth);
        let closes_if = self.lines.last().is_some_and(|l| *l == format!("{pad}end"));
        if !closes_if {
            return self.if_(cond, body);
        }
        self.lines.pop();
        self.line(format!("end else if ({}) begin", cond.as_ref()));
        self.depth += 1;
        body(self);
        self.depth -= 1;
        self.line("end")
    }

    /// `<lhs> <= <rhs>;` (non-blocking, for clocked blocks).
    pub fn nb(&mut self, lhs: impl AsRef<str>, rhs: impl AsRef<str>) -> &mut Code {
        self.line(format!("{} <= {};", lhs.as_ref(), rhs.as_ref()))
    }

    /// `<lhs> = <rhs>;` (blocking, for combinational blocks).
    pub fn set(&mut self, lhs: impl AsRef<str>, rhs: impl AsRef<str>) -> &mut Code {
        self.line(format!("{} = {};", lhs.as_ref(), rhs.as_ref()))
    }

    /// Every line of `other`, at the current depth (for code assembled in parts, such as a
    /// register's reset and update written by different helpers).
    pub fn append(&mut self, other: &Code) -> &mut Code {
        let pad = INDENT.repeat(self.depth);
        for l in &other.lines {
            if l.is_empty() {
                self.lines.push(String::new());
            } else {
                self.lines.push(format!("{pad}{l}"));
            }
        }
        self
    }

    /// The lines, each indented by `extra` more levels.
    pub(crate) fn render(&self, extra: usize, out: &mut String) {
        let pad = INDENT.repeat(extra);
        for l in &self.lines {
            if l.is_empty() {
                out.push('\n');
            } else {
                out.push_str(&pad);
                out.push_str(l);
                out.push('\n');
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_blocks_indent_and_close() {
        let mut c = Code::new();
        c.if_else(
            "!rst_n",
            |c| {
                c.nb("a_q", "1'b0");
            },
            |c| {
                c.if_("en", |c| {
                    c.nb("a_q", "a_d");
                });
            },
        );
        let mut out = String::new();
        c.render(1, &mut out);
        assert_eq!(
            out,
            "    if (!rst_n) begin\n        a_q <= 1'b0;\n    end else begin\n        if (en) begin\n            a_q <= a_d;\n        end\n    end\n"
        );
    }
}
