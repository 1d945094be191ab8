//! caq-cpu: the CPU backend (work in progress).
