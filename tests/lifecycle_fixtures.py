"""A playbook where leads go round the lifecycle: qualified, routed, followed up, recycled, nurtured again.

Shared by the engine tests (tests/test_rules_lifecycle.py), the workflow test on the time-skipping server
(tests/test_lead_lifecycle.py) and the simulator test. ``lifecycle_playbook(reenroll)`` sets the recycled
journey's re-enrolment: None leaves it out (the default, ``once``).
"""

from __future__ import annotations

import json

# A pricing page view is worth 70 points: straight to SQL (routed, 24 h first-touch SLA, escalated, and
# reassigned 24 h after the breach). 30 days in SQL recycles the lead with its score reset; the recycled
# journey nurtures it until it qualifies again.
_LIFECYCLE = """\
name: lifecycle
scoring:
  rules:
    - {id: pricing, when: 'event.type == "page_view" and contains(event.url, "/pricing")', points: 70}
stages:
  rules:
    - {id: to_mql, to: mql, when: score >= 30}
    - {id: to_sql, to: sql, when: score >= 60}
    - {id: competitor, to: disqualified, when: 'lead.company == "Rival Inc"'}
  recycle:
    - {from: sql, after: 30d}
routing:
  default_team: inside-sales
sla:
  policies:
    - {id: first_touch, first_touch: 24h, escalate_to_manager: true, reassign_after: 24h, max_reassignments: 3}
journeys:
  - id: recycled_nurture
    enroll_when: stage == "recycled"
    exit_when: stage == "sql"
REENROLL    steps:
      - {id: hello_again, type: send_email, template: welcome}
      - {id: pause, type: wait, duration: 7d}
      - {id: story, type: send_email, template: case_study}
"""


def lifecycle_playbook(reenroll: object | None = "every_time") -> str:
    line = f"    reenroll: {json.dumps(reenroll)}\n" if reenroll is not None else ""
    return _LIFECYCLE.replace("REENROLL", line)
