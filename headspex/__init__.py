"""headspex: mechanistic component attribution by ablation."""
