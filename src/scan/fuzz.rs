//! Fuzzing: no input, however broken, makes the scanner panic.
