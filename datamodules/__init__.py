"""Data: GOPRO-layout paired datasets, synthetic motion blur, Lightning DataModules."""

import os

# Albumentations asks PyPI for a newer version on import (up to 2 s, and a warning offline);
# runs here must not depend on the network. Set the variable to 0 to get the check back.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
