"""edgebert runtime: graph executor and kernels."""
