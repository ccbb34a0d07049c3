"""Stock use cases, one module per capability: ``grants`` (applications, opening
stock), ``movements`` (query, distribution, requisitions, voids, returns, the
identity), ``alerts`` (warning rules, reading, mailing), ``writeoff`` (write-off
declarations, audit reports), ``destruction``, and ``loop`` (the background
stock loop). They take and return domain values and storage records; the
fiscal platform through clients.fiscal.FiscalClient (failures worded by
``_platform``), mail through clients.mail.Mailer."""

__all__: list[str] = []
