//! GEMM entry point over the gemm crate, generic over f32/f64.
