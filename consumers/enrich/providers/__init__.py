"""Vision-model providers behind one interface (see base.py)."""
