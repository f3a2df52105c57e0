'doc'
'more'
from __future__ import annotations
