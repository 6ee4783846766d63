"""The portal's words, in Korean (the default) and English. One table, so a missing
translation is a test failure, not a blank on someone's phone."""

from __future__ import annotations

LANGS = ("ko", "en")
SERVICES = ("messenger", "taxi", "maps", "mail", "pay", "shopping", "other")
EVIDENCE = ("receipt", "screenshot", "sales_record")

T: dict[str, dict[str, str]] = {
    "title": {"ko": "서비스 장애 피해 접수", "en": "Report damage from the service outage"},
    "intro": {"ko": "장애로 입은 피해를 알려 주세요. 접수하면 접수 번호를 드립니다.",
              "en": "Tell us what the outage cost you. You will get a receipt number."},
    "other_lang": {"ko": "English", "en": "한국어"},
    "reporter_kind": {"ko": "신고자 유형", "en": "You are a"},
    "kind.paid_user": {"ko": "유료 이용자", "en": "Paid user"},
    "kind.free_user": {"ko": "무료 이용자", "en": "Free user"},
    "kind.taxi_driver": {"ko": "택시 기사", "en": "Taxi driver"},
    "kind.channel_shop": {"ko": "채널 입점 사업자", "en": "Channel shop owner"},
    "kind.advertiser": {"ko": "광고주", "en": "Advertiser"},
    "kind.other_partner": {"ko": "기타 파트너", "en": "Other partner"},
    "service": {"ko": "피해를 입은 서비스", "en": "Affected service"},
    "svc.messenger": {"ko": "메신저", "en": "Messenger"},
    "svc.taxi": {"ko": "택시", "en": "Taxi"},
    "svc.maps": {"ko": "지도", "en": "Maps"},
    "svc.mail": {"ko": "메일", "en": "Mail"},
    "svc.pay": {"ko": "페이", "en": "Pay"},
    "svc.shopping": {"ko": "쇼핑", "en": "Shopping"},
    "svc.other": {"ko": "기타", "en": "Other"},
    "window_start": {"ko": "피해 시작 (한국 시간)", "en": "Damage started (Korea time)"},
    "window_end": {"ko": "피해 종료 (한국 시간)", "en": "Damage ended (Korea time)"},
    "claimed_amount": {"ko": "피해 금액 (원)", "en": "Loss (won)"},
    "plan_price": {"ko": "유료 요금제 금액 (원, 유료 이용자만)", "en": "Your paid plan's price (won, paid users only)"},
    "account": {"ko": "계정 아이디 (선택)", "en": "Account ID (optional)"},
    "account_hint": {"ko": "유료 이용자와 파트너는 계정을 알려 주시면 등록된 요금제와 매출로 보상액을 정합니다. 입력한 요금제 "
                           "금액으로 정하지 않습니다.",
                     "en": "Paid users and partners: with your account we price your compensation from the plan and "
                           "sales on record, not from a price typed here."},
    "evidence": {"ko": "첨부할 수 있는 증빙", "en": "Evidence you can provide"},
    "ev.receipt": {"ko": "영수증", "en": "Receipt"},
    "ev.screenshot": {"ko": "화면 캡처", "en": "Screenshot"},
    "ev.sales_record": {"ko": "매출 기록", "en": "Sales record"},
    "description": {"ko": "피해 내용", "en": "What happened"},
    "contact": {"ko": "연락처 (휴대전화 또는 이메일)", "en": "Contact (mobile number or e-mail)"},
    "submit": {"ko": "접수하기", "en": "Submit report"},
    "required": {"ko": "필수 항목입니다.", "en": "This is required."},
    "err.amount": {"ko": "0원 이상 100억 원 이하의 숫자를 입력해 주세요.",
                   "en": "Enter a number from 0 to 10,000,000,000 won."},
    "err.window": {"ko": "종료 시각은 시작 시각보다 뒤여야 합니다.", "en": "The end must be after the start."},
    "err.contact": {"ko": "휴대전화 번호(예: 010-1234-5678) 또는 이메일을 입력해 주세요.",
                    "en": "Enter a mobile number (e.g. 010-1234-5678) or an e-mail address."},
    "err.form": {"ko": "입력 내용을 확인해 주세요.", "en": "Please check the highlighted fields."},
    "err.expired": {"ko": "양식이 만료되었습니다. 다시 입력해 주세요.",
                    "en": "This form has expired; please fill it in again."},
    "err.service": {"ko": "목록에서 서비스를 선택해 주세요.", "en": "Choose a service from the list."},
    "err.reused": {"ko": "이 양식은 이미 다른 내용으로 접수되었습니다. 이번 내용은 저장되지 않았습니다. 별도의 신고라면 "
                          "아래 새 양식으로 다시 제출해 주세요.",
                   "en": "This form was already submitted with different details; nothing was stored this time. "
                         "If this is a separate report, submit it again with the form below."},
    "err.busy": {"ko": "지금은 접수할 수 없습니다. 잠시 후 같은 양식으로 다시 시도해 주세요 (중복 접수되지 않습니다).",
                 "en": "We could not store your report right now. Please submit the same form again in a "
                       "moment (it will not be stored twice)."},
    "err.rate": {"ko": "요청이 너무 많습니다. 잠시 후 다시 시도해 주세요.",
                 "en": "Too many requests; please try again in a minute."},
    "received": {"ko": "접수되었습니다", "en": "Your report is in"},
    "receipt": {"ko": "접수 번호", "en": "Receipt number"},
    "keep_receipt": {"ko": "접수 번호와 연락처로 처리 상태를 확인할 수 있습니다.",
                     "en": "Use the receipt number and your contact to check its status."},
    "status_title": {"ko": "처리 상태 확인", "en": "Check a report's status"},
    "check": {"ko": "확인하기", "en": "Check"},
    "not_found": {"ko": "해당 접수 번호와 연락처의 신고가 없습니다.",
                  "en": "No report with this receipt number and contact."},
    "unknown": {"ko": "지금은 확인할 수 없습니다. 신고가 없다는 뜻이 아니니 다시 접수하지 마시고 잠시 후 다시 확인해 주세요.",
                "en": "We cannot check right now. This does not mean your report is missing: please do not file "
                      "it again, and check back in a few minutes."},
    "status": {"ko": "상태", "en": "Status"},
    "st.received": {"ko": "접수됨", "en": "Received"},
    "st.verified": {"ko": "검토 대기", "en": "Waiting for review"},
    "st.approved": {"ko": "보상 승인", "en": "Compensation approved"},
    "st.rejected": {"ko": "보상 대상 아님", "en": "Not eligible"},
    "st.escalated": {"ko": "개별 심사 중", "en": "Under individual review"},
    "compensation": {"ko": "보상", "en": "Compensation"},
    "new_report": {"ko": "새로 접수하기", "en": "Report another"},
    "won": {"ko": "원", "en": "won"},
    # the public status page (/incidents) and its feed; {x} are filled in by the page
    "inc.title": {"ko": "서비스 상태", "en": "Service status"},
    "inc.all_up": {"ko": "모든 서비스가 정상입니다.", "en": "All services are operating normally."},
    "inc.some_down": {"ko": "일부 서비스에 장애가 있습니다.", "en": "Some services are down."},
    "inc.up": {"ko": "정상", "en": "Operational"},
    "inc.down_since": {"ko": "{t}부터 장애", "en": "Down since {t}"},
    "inc.history": {"ko": "지난 90일", "en": "Last 90 days"},
    "inc.legend": {"ko": "막대 하나가 하루입니다 (한국 시간). 초록: 장애 없음, 주황: 1시간 미만, 빨강: 1시간 이상.",
                   "en": "Each bar is one day (Korea time). Green: no outage, orange: under an hour, red: an hour "
                         "or more."},
    "inc.day_ok": {"ko": "{d}: 장애 없음", "en": "{d}: no outage"},
    "inc.day_out": {"ko": "{d}: {m}분 장애", "en": "{d}: {m} min out"},
    "inc.incidents": {"ko": "장애 기록", "en": "Incidents"},
    "inc.none": {"ko": "기록된 장애가 없습니다.", "en": "No incidents recorded."},
    "inc.ongoing": {"ko": "진행 중", "en": "Ongoing"},
    "inc.resolved": {"ko": "해결됨", "en": "Resolved"},
    "inc.start": {"ko": "시작", "en": "Started"},
    "inc.end": {"ko": "종료", "en": "Ended"},
    "inc.duration": {"ko": "{h}시간 {m}분", "en": "{h} h {m} min"},
    "inc.cause": {"ko": "원인", "en": "Root cause"},
    "inc.cause_unknown": {"ko": "원장에 기록되지 않음", "en": "Not recorded in the ledger"},
    "inc.services": {"ko": "영향받은 서비스", "en": "Services affected"},
    "inc.all_services": {"ko": "모든 서비스", "en": "All services"},
    "inc.credited": {"ko": "{n}개 계정에 총 {total}원 보상", "en": "{n} accounts credited, {total} won in total"},
    "inc.not_credited": {"ko": "아직 보상 내역이 없습니다", "en": "No credits yet"},
    "inc.compensation": {"ko": "보상", "en": "Compensation"},
    "inc.timeline": {"ko": "경과", "en": "Timeline"},
    "inc.feed": {"ko": "Atom 피드로 구독하기", "en": "Subscribe (Atom feed)"},
    "inc.kst": {"ko": "한국 시간", "en": "Korea time"},
    "inc.entry_title": {"ko": "{services} 장애 ({state})", "en": "Outage of {services} ({state})"},
    "ev.out": {"ko": "{s} 장애 시작", "en": "{s} went down"},
    "ev.site-down": {"ko": "{s} 사이트 중단", "en": "Site {s} lost"},
    "ev.back": {"ko": "{s} 복구", "en": "{s} back"},
    "ev.resolved": {"ko": "장애 해결", "en": "Incident resolved"},
}


def t(key: str, lang: str) -> str:
    return T[key][lang if lang in LANGS else "ko"]


def pick_lang(query: str | None, cookie: str | None) -> str:
    for v in (query, cookie):
        if v in LANGS:
            return v
    return "ko"
