"""Stock of bill numbers, one module per capability.

- ``_common``: the unit lock, the event log, the one locked-row lookup, carving
  ranges out of segments;
- ``segments``: the query, enable/disable, the stock identity;
- ``grants``: grant applications and opening stock;
- ``movements``: distribution, requisitions, automatic distribution, voids, returns;
- ``alerts``: low-stock warning rules, the warnings read and mailed;
- ``writeoff``: write-off figures and declarations, audit figures and reports;
- ``destruction``: destruction requests for paper;
- ``records``: the frozen records all of them return.

Import the module you need (``from storage.stock import movements``); this
package itself re-exports nothing, so importing one capability loads no other.
"""

__all__: list[str] = []
