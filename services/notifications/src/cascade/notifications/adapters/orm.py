"""Tables of the notifications service's own database."""

from cascade.shared.db import make_metadata
from cascade.shared.messaging.tables import inbox_table, outbox_table

metadata = make_metadata()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
