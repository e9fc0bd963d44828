//! The Amazon States Language (JSONPath mode), as Nimbus workflows run it: a definition
//! parsed and validated once (every path, template and intrinsic call compiled, every error
//! located by its JSON pointer), and a deterministic interpreter that says what a state does
//! next without doing it — the engine performs tasks, timers and branches and journals each
//! transition. Nothing here does I/O or reads a clock; randomness comes from the caller.

pub mod intrinsic;
pub mod path;
