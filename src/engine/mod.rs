//! Per-step math on a Backend: forward, backward, the exact second-order pass (gradient of the matching distance w.r.t. the input).
