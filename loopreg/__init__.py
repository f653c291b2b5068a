"""LoopReg: register a parametric human body model to 3D scans."""

__version__ = "0.1.0"
