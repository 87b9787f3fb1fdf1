"""Int8 linear-layer kernels (quantize + GEMM + dequant fused), one per CPU path."""
