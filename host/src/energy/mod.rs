//! Energy per inference (issue 6): being written.
