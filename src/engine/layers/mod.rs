//! One module per layer kind, each with the kind's four passes over the
//! [`Backend`](crate::backend::Backend) ops:
//!
//! - `forward`: the primal value;
//! - `backward`: the input adjoint (when asked) and the parameter gradients;
//! - `tangent`: the forward-mode derivative along a parameter direction `t`
//!   (`ydot = J_x xdot + J_theta t`), for the second-order pass;
//! - `dual_reverse`: the reverse pass of the dual (primal, tangent) computation, to
//!   the adjoints of the input and of its tangent.
//!
//! The engine ([`super::passes`]) walks a model's op list and hands each op its
//! buffers; the maths is here, the derivations in `docs/derivations/engine.md` and
//! the per-op documents of `docs/derivations/`. An input adjoint is given as
//! `(buffer, acc)`: `acc` adds to it (the input also feeds another op).

pub(super) mod act;
pub(super) mod add;
pub(super) mod contraction;
pub(super) mod norm;
pub(super) mod pool;
