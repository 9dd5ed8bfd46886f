"""Tables of the accounts service's own database."""

from cascade.shared.db import make_metadata

metadata = make_metadata()
