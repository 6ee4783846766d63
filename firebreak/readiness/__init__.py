"""Pure analysis of a topology under site loss: scenario -> service states and findings."""

from firebreak.readiness.analysis import (FAILING_KINDS, Finding, Plan, Report, ScenarioResult,
                                          analyse, analyse_all, scenarios)

__all__ = ["FAILING_KINDS", "Finding", "Plan", "Report", "ScenarioResult", "analyse", "analyse_all",
           "scenarios"]
