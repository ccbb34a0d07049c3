"""Which permission every operation of the engine needs, in one table.

Keys are operation names: a gRPC method's full name (``/ebill.v1.Service/Method``)
and, when the HTTP server lands, ``"HTTP <METHOD> <route path>"`` (the console
and the gateway add theirs to :data:`RULES` the same way). The authentication
interceptor refuses a method that is not in the table (PERMISSION_DENIED, so a
new RPC is closed until someone decides who may call it), and the coverage test
(tests/e2e/test_auth_coverage.py) fails on one.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.identity import Permission as P

__all__ = ["PUBLIC", "RULES", "Rule", "rule_for"]


@dataclass(frozen=True, slots=True)
class Rule:
    """``permission``: what the caller must hold (None: any authenticated caller).
    ``users_only``: a signed-in person, not an app (the decisions of two-person
    rules, and the management of identity). ``public``: no credentials at all."""

    permission: P | None
    users_only: bool = False
    public: bool = False


PUBLIC = Rule(None, public=True)
ANY = Rule(None)


def _svc(service: str, methods: dict[str, Rule]) -> dict[str, Rule]:
    return {f"/ebill.v1.{service}/{name}": rule for name, rule in methods.items()}


RULES: dict[str, Rule] = {
    **_svc(
        "IssuanceService",
        {
            "IssueBill": Rule(P.BILL_ISSUE),
            "IssueBatch": Rule(P.BILL_ISSUE),
            "GetBill": Rule(P.BILL_READ),
            "GetBillStatus": Rule(P.BILL_READ),
            "GetBacklog": Rule(P.REPORT_READ),
            "RecordOfflineBill": Rule(P.PAPER_USE),
        },
    ),
    **_svc(
        "LifecycleService",
        {
            "RedFlush": Rule(P.BILL_RED_FLUSH),
            "Refund": Rule(P.BILL_REFUND),
            "BackEntry": Rule(P.BILL_BACK_ENTRY),
            "ListBills": Rule(P.BILL_READ),
            "ReceivePaper": Rule(P.PAPER_MANAGE),
            "GetPaperStock": Rule(P.PAPER_USE),
            "ConvertToPaper": Rule(P.PAPER_USE),
            "Reprint": Rule(P.PAPER_USE),
            "ReissuePaper": Rule(P.PAPER_USE),
            "VoidPaper": Rule(P.PAPER_USE),
            "VoidBlankPaper": Rule(P.PAPER_MANAGE),
        },
    ),
    **_svc(
        "StockService",
        {
            "CreateGrantApplication": Rule(P.STOCK_MANAGE),
            "UpdateGrantApplication": Rule(P.STOCK_MANAGE),
            "DeleteGrantApplication": Rule(P.STOCK_MANAGE),
            "SubmitGrantApplication": Rule(P.STOCK_MANAGE),
            "SyncGrantApplications": Rule(P.STOCK_MANAGE),
            "EnableGrant": Rule(P.STOCK_MANAGE),
            "ListGrantApplications": Rule(P.STOCK_READ),
            "EnterOpeningStock": Rule(P.STOCK_MANAGE),
            # Two-person rules: the second person is a signed-in approver.
            "ConfirmOpeningStock": Rule(P.STOCK_APPROVE, users_only=True),
            "RequestRequisition": Rule(P.STOCK_MANAGE),
            "DecideRequisition": Rule(P.STOCK_APPROVE, users_only=True),
            "Distribute": Rule(P.STOCK_MANAGE),
            "SetAutoDistribution": Rule(P.STOCK_MANAGE),
            "QueryStock": Rule(P.STOCK_READ),
            "SetSegmentEnabled": Rule(P.STOCK_MANAGE),
            "VoidStock": Rule(P.STOCK_MANAGE),
            "RequestReturn": Rule(P.STOCK_MANAGE),
            "DecideReturn": Rule(P.STOCK_APPROVE, users_only=True),
            "GetStockIdentity": Rule(P.STOCK_READ),
            "SetAlertRule": Rule(P.STOCK_MANAGE),
            "ListAlerts": Rule(P.STOCK_READ),
            "CreateWriteOff": Rule(P.WRITEOFF_MANAGE),
            "UpdateWriteOff": Rule(P.WRITEOFF_MANAGE),
            "SubmitWriteOff": Rule(P.WRITEOFF_MANAGE),
            "ListWriteOffs": Rule(P.WRITEOFF_MANAGE),
            "SubmitAuditReport": Rule(P.WRITEOFF_MANAGE),
            "RequestDestruction": Rule(P.STOCK_MANAGE),
            "DecideDestruction": Rule(P.STOCK_APPROVE, users_only=True),
        },
    ),
    **_svc(
        "AuditService",
        {
            "GetTreeHead": Rule(P.AUDIT_READ),
            "GetInclusionProof": Rule(P.AUDIT_READ),
            "GetConsistencyProof": Rule(P.AUDIT_READ),
        },
    ),
    **_svc(
        "IdentityService",
        {
            "Login": PUBLIC,
            "Logout": Rule(None, users_only=True),
            "WhoAmI": ANY,
            **{
                name: Rule(P.IDENTITY_MANAGE, users_only=True)
                for name in (
                    "CreateUser",
                    "SetUserEnabled",
                    "ResetPassword",
                    "EnrolTotp",
                    "SetRole",
                    "AssignRole",
                    "RegisterApp",
                    "RotateAppSecret",
                    "SetAppEnabled",
                    "SetAppAccess",
                )
            },
        },
    ),
}


def rule_for(operation: str) -> Rule | None:
    """The rule of an operation; None: not in the table (refused)."""
    return RULES.get(operation)
