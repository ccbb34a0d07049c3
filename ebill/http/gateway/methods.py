"""Every vendor interface the gateway answers, with the permission it needs, the
gRPC method it stands for and its group among seed 004's 31 interfaces; and the
interfaces it knows but does not serve, with the reason (docs/gateway.md).

An app may call an interface when it holds the permission and its allowed
methods contain "*", the gRPC method, or ``vendor:<interface>``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ebill.http.gateway import issue, lifecycle, listing, lookup, paper, stock
from ebill.http.gateway.call import Method
from usecases.gateway import Listed

__all__ = ["METHODS", "NOT_SERVED"]

_ISSUE = "/ebill.v1.IssuanceService/IssueBill"
_BATCH = "/ebill.v1.IssuanceService/IssueBatch"
_GET = "/ebill.v1.IssuanceService/GetBill"
_STATUS = "/ebill.v1.IssuanceService/GetBillStatus"
_RED = "/ebill.v1.LifecycleService/RedFlush"
_PAPER = "/ebill.v1.LifecycleService/GetPaperStock"
_STOCK = "/ebill.v1.StockService/QueryStock"
_LIST = "/ebill.v1.LifecycleService/ListBills"
_RESEND = "/ebill.v1.DeliveryService/Resend"

METHODS: Mapping[str, Method] = {
    # General (通用类)
    "testServerConnect": Method(lookup.test_connect, "", "", "general"),
    "getEBillPicUrl": Method(lookup.picture_url, "bill.read", _GET, "general"),
    "getEBillNotifyPic": Method(lookup.notice_picture, "bill.read", _GET, "general"),
    "sendBillNotice": Method(lookup.send_notice, "delivery.send", _RESEND, "general"),
    # Issuance (开票业务类)
    "invoiceEBillOutpatient": Method(issue.issue_one("outpatient"), "bill.issue", _ISSUE, "issue"),
    "invEBillHospitalized": Method(issue.issue_one("inpatient"), "bill.issue", _ISSUE, "issue"),
    "invEBillRegistration": Method(issue.issue_one("registration"), "bill.issue", _ISSUE, "issue"),
    "invEBillCheckUp": Method(issue.issue_one("checkup"), "bill.issue", _ISSUE, "issue"),
    "invoiceEBillCommon": Method(issue.issue_one("common"), "bill.issue", _ISSUE, "issue"),
    "batchInvoiceEBillOutpatient": Method(
        issue.issue_batch("outpatient"), "bill.issue", _BATCH, "issue"
    ),
    "batchInvoiceEBillHospitalized": Method(
        issue.issue_batch("inpatient"), "bill.issue", _BATCH, "issue"
    ),
    "batchInvoiceEBillRegistration": Method(
        issue.issue_batch("registration"), "bill.issue", _BATCH, "issue"
    ),
    "batchInvoiceEBillCheckUp": Method(issue.issue_batch("checkup"), "bill.issue", _BATCH, "issue"),
    "getBatchInvoiceEBill": Method(issue.batch_result, "bill.read", _GET, "issue"),
    "writeOffEBill": Method(lifecycle.red_flush, "bill.red_flush", _RED, "issue"),
    "writeOffEBillToPaper": Method(lifecycle.red_flush_paper, "bill.red_flush", _RED, "issue"),
    "invoicePayMentVoucher": Method(issue.pay_voucher, "bill.issue", _ISSUE, "issue"),
    # A partial deposit refund is Lifecycle.refund, under the same red-flush permission.
    "writeOffPayMentVoucher": Method(lifecycle.red_flush_voucher, "bill.red_flush", _RED, "issue"),
    "getPaperBillNo": Method(paper.next_paper_no, "paper.use", _PAPER, "issue"),
    "turnPaper": Method(
        paper.to_paper, "paper.use", "/ebill.v1.LifecycleService/ConvertToPaper", "issue"
    ),
    "reTurnPaper": Method(
        paper.reprint_paper, "paper.use", "/ebill.v1.LifecycleService/ReissuePaper", "issue"
    ),
    "invalidPaper": Method(paper.paper_void, "bill.red_flush", _RED, "issue"),
    "invalidBlankBillNo": Method(
        paper.void_blank, "paper.manage", "/ebill.v1.LifecycleService/VoidBlankPaper", "issue"
    ),
    # Verification and reconciliation (查验类)
    "getEBillByBusNo": Method(lookup.bill_by_serial, "bill.read", _STATUS, "verify"),
    "getEBillStatesByBillInfo": Method(lookup.bill_status, "bill.read", _STATUS, "verify"),
    "checkTotalData": Method(
        stock.check_day(red=False, by_place=False), "report.read", "", "verify"
    ),
    "checkDataByPlace": Method(
        stock.check_day(red=False, by_place=True), "report.read", "", "verify"
    ),
    "checkWriteOffData": Method(
        stock.check_day(red=True, by_place=True), "report.read", "", "verify"
    ),
    "checkTotalDataByIvcDate": Method(
        stock.check_day(red=False, by_place=False, by_issue=True), "report.read", "", "verify"
    ),
    "checkDataPlaceByIvcDate": Method(
        stock.check_day(red=False, by_place=True, by_issue=True), "report.read", "", "verify"
    ),
    "checkWriteOffDataByIvcDate": Method(
        stock.check_day(red=True, by_place=True, by_issue=True), "report.read", "", "verify"
    ),
    "getBillByBusDate": Method(listing.bills_by_time(by_issue=False), "bill.read", _LIST, "verify"),
    "getBillByIvcDate": Method(listing.bills_by_time(by_issue=True), "bill.read", _LIST, "verify"),
    "getEBillUnPrintList": Method(
        listing.payer_bills(Listed.UNPRINTED, card_required=True), "bill.read", _LIST, "general"
    ),
    "getNotPrintList": Method(
        listing.payer_bills(Listed.UNPRINTED, card_required=False), "bill.read", _LIST, "general"
    ),
    "getEBillPrintList": Method(
        listing.payer_bills(Listed.PRINTED, card_required=True), "bill.read", _LIST, "general"
    ),
    # Base management (基础管理类)
    "getValidBillNo": Method(stock.valid_ranges, "stock.read", _STOCK, "base"),
    "getValidBillBatchCode": Method(stock.valid_bill_codes, "stock.read", _STOCK, "base"),
}

# Interfaces of the specification this engine does not serve, and why. Each
# answers E2005 with the reason (after the envelope and app are checked).
NOT_SERVED: Mapping[str, str] = {
    "cancelPayMentVoucherBalance": (
        "deposit settlement is not tracked by this engine: an inpatient bill does not "
        "consume vouchers here, so there is no settlement to undo (writeOffEBill red-flushes "
        "the inpatient bill; the vouchers stay as they are)"
    ),
    "invalidPayMentVoucherPaper": "deposit vouchers are not printed on paper here",
    "receiveArreasFeedBack": "arrears feedback is the platform's circulation service",
    "getBillDetail": "use the REST /v1/bills/{code}/{no} (full bill with its request)",
    "getEBillAccountStatus": "reimbursement booking (入账) status is the platform's",
    "billStockOut": "distribution is a bill-office operation (StockService.Distribute)",
    "billStockReturn": "returns are decided by the bill office (StockService.RequestReturn)",
    "getBillStockOutList": "use StockService.QueryStock",
    "turnPaperPrint": "printing runs in the vendor's own client component",
    "reTurnPaperPrint": "printing runs in the vendor's own client component",
    "printPaperBill": "printing runs in the vendor's own client component",
    "printElectBill": "printing runs in the vendor's own client component",
    "getElectBilllListTotal": "printing runs in the vendor's own client component",
    "printElectBillList": "printing runs in the vendor's own client component",
    "generateAccount": "booking summaries (汇总单入账) are the platform's",
    "getEBillAcList": "booking summaries (汇总单入账) are the platform's",
    "downEBillAccount": "booking summaries (汇总单入账) are the platform's",
    "registerEBillAcc": "booking summaries (汇总单入账) are the platform's",
    "cancelEBillAcc": "booking summaries (汇总单入账) are the platform's",
    "receiveCheckTotalData": "the platform pulling the HIS's totals is not served",
    "receiveCheckWriteOffData": "the platform pulling the HIS's totals is not served",
    "receiveBillByBusDate": "the platform pulling the HIS's totals is not served",
    "queryCheckTotalData": "the platform pulling the HIS's totals is not served",
    "queryCheckWriteOffData": "the platform pulling the HIS's totals is not served",
    "queryBillByBusDate": "the platform pulling the HIS's totals is not served",
}
