"""What layouts, locales and the unsubscribe link cost per nurture email: render time (en, ja) and token
signing/verification. Prints figures; not a test."""

from __future__ import annotations

import time

from activities.email import Mailer
from activities.rendering import EmailRenderer
from activities.unsubscribe import lead_of_token, unsubscribe_token
from rules.model import SendEmail
from settings import ROOT, Settings

LEAD_ID = "lead-" + "a" * 32
ROUNDS = 2000


def per_call(label: str, fn, rounds: int = ROUNDS) -> None:  # type: ignore[no-untyped-def]
    fn()  # warm: templates compiled once per process
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    print(f"{label:<48} {(time.perf_counter() - start) / rounds * 1e6:8.1f} µs")


def main() -> None:
    settings = Settings(
        unsubscribe_key="bench", sender_name="Acme KK", sender_postal_address="東京都千代田区丸の内1-1-1"
    )
    mailer = Mailer(settings, None, EmailRenderer(ROOT / "templates"))  # type: ignore[arg-type]  # no store needed
    lead = {"first_name": "太郎", "last_name": "山田", "company": "株式会社サンプル", "email": "t@example.jp"}
    for locale in ("en", "ja"):
        mail = SendEmail(f"{LEAD_ID}:nurture:1", "nurture", "case_study", lead["email"], {"lead": lead}, None, locale)
        per_call(
            f"render case_study ({locale}) with layout and footer",
            lambda m=mail: mailer.render(m, mailer.unsubscribe_for(m, LEAD_ID)),
        )
    token = unsubscribe_token(LEAD_ID, "bench")
    per_call("sign an unsubscribe token", lambda: unsubscribe_token(LEAD_ID, "bench"), 20000)
    per_call("verify a token (current key)", lambda: lead_of_token(token, ["bench"]), 20000)
    per_call("verify a token (3rd key after rotations)", lambda: lead_of_token(token, ["k1", "k2", "bench"]), 20000)


if __name__ == "__main__":
    main()
