"""Experiments built on armvision's public API (not part of the library): `study`, the small-scale study of ARM's
claims (`armvision study`)."""
