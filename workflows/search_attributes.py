"""leadflow's custom search attributes: Temporal's own visibility can list leads by them
(``temporal workflow list --query "LeadSlaStatus='overdue'"``). The dev server registers them at
start (devstack) and tests register them on the servers they start."""

from temporalio.common import SearchAttributeKey

LEAD_STAGE = SearchAttributeKey.for_keyword("LeadStage")
LEAD_SCORE = SearchAttributeKey.for_int("LeadScore")
LEAD_GRADE = SearchAttributeKey.for_keyword("LeadGrade")
LEAD_OWNER = SearchAttributeKey.for_keyword("LeadOwner")
LEAD_SLA_STATUS = SearchAttributeKey.for_keyword("LeadSlaStatus")
LEAD_SLA_DUE = SearchAttributeKey.for_datetime("LeadSlaDueAt")

ALL = (LEAD_STAGE, LEAD_SCORE, LEAD_GRADE, LEAD_OWNER, LEAD_SLA_STATUS, LEAD_SLA_DUE)


def dev_server_flags() -> list[str]:
    """``--search-attribute Name=Type`` flags for ``temporal server start-dev``."""
    names = {"KEYWORD": "Keyword", "INT": "Int", "DATETIME": "Datetime"}
    return [
        arg
        for key in ALL
        for arg in ("--search-attribute", f"{key.name}={names[key.indexed_value_type.name.split('_')[-1]]}")
    ]
