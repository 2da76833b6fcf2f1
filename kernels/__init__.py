"""GPU kernels (Triton) with pure-torch references; CPU always takes the reference."""
