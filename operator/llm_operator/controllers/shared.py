"""What every kind's controller shares: the decisions on applying children, the conditions and
messages of a status, and writing a status with the Events of its transitions. It knows no kind:
each controller passes its kind and its own transitions."""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from ..k8s import Kube, now
from ..names import HASH_ANNOTATION
from ..render.meta import references

log = logging.getLogger("llm_operator.reconcile")

# A refused object is tried again on every change of the spec or a child, and otherwise this
# often (the work queue's longest backoff): soon enough to notice a granted permission, rarely
# enough to be no load. A retry refused again writes nothing.
FAILED_RETRY_SECONDS = 120.0
CONFLICT_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class Result:
    phase: str | None  # None when the object is gone
    writes: int
    requeue_after: float | None = None  # look again even without an event (things we do not watch)


# ---------------------------------------------------------------- applying children

# Fields whose values are Kubernetes quantities: the API server returns them in canonical form
# ("0.5" comes back as "500m", "65536Mi" as "64Gi"), so they are compared by value.
_QUANTITY_PARENTS = ("requests", "limits", "capacity")
_QUANTITY_KEYS = ("sizeLimit",)


def _same_quantity(desired: Any, live: Any) -> bool:
    try:
        return parse_quantity(desired) == parse_quantity(live)
    except ValueError:
        return False


def is_subset(desired: Any, live: Any, key: str = "", parent: str = "") -> bool:
    """True when every field the operator sets has the same value in the live object.

    The API server adds defaults (so live has more), drops false/empty values of non-pointer
    fields (so a desired `readOnly: false` may be absent) and canonicalises quantities: all of
    these count as unchanged."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return not desired
        return all(is_subset(value, live.get(k), k, key) if k in live else value in (False, 0, "", [], {}, None)
                   for k, value in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(
            is_subset(wanted, held, key, parent) for wanted, held in zip(desired, live, strict=True))
    if desired == live or str(desired) == str(live):
        return True
    return (parent in _QUANTITY_PARENTS or key in _QUANTITY_KEYS) and _same_quantity(desired, live)


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """Write only when the rendered object changed or someone changed what the operator set (drift)."""
    if live is None:
        return True
    if (live["metadata"].get("annotations") or {}).get(HASH_ANNOTATION) != desired["metadata"]["annotations"][HASH_ANNOTATION]:
        return True
    return not is_subset(desired, live)


def name_conflict(desired: dict[str, Any], existing: dict[str, Any], owner_uid: str | None) -> str | None:
    """Why an object of the desired name that the operator did not list as a child must not be
    written (None when it is this resource's own, e.g. with its labels removed by hand)."""
    controller = next((ref for ref in existing["metadata"].get("ownerReferences") or [] if ref.get("controller")), None)
    if controller and controller.get("uid") == owner_uid:
        return None
    owner = desired["metadata"]["ownerReferences"][0]
    if controller is None:
        held = f"it was not created by this {owner['kind']}"
    else:
        held = f"it is controlled by {controller.get('kind')} {controller.get('name')} (uid {controller.get('uid')})"
        if controller.get("kind") == owner["kind"] and controller.get("name") == owner["name"]:
            held += "; an old object of the same name still being deleted is the usual cause, and it clears by itself"
    return (f"{desired['kind']} {desired['metadata']['name']} already exists and {held}. "
            f"The operator leaves it untouched, and applies nothing that would use it: rename or delete it, "
            f"or rename the {owner['kind']}.")


class HeldChildren:
    """The children one reconcile does not apply: those whose name another owner holds (their
    name_conflict messages are in `conflicts`), and those that would use one of them (mount its
    claim, run as its account, bind to it: render.meta.references). Renderers list what is used
    before what uses it, so one pass in that order finds them all."""

    def __init__(self) -> None:
        self.conflicts: list[str] = []
        self._held: set[tuple[str, str]] = set()

    def uses_held(self, desired: dict[str, Any]) -> bool:
        if references(desired) & self._held:
            self._held.add((desired["kind"], desired["metadata"]["name"]))
            return True
        return False

    def in_conflict(self, desired: dict[str, Any], existing: dict[str, Any] | None, owner_uid: str | None) -> bool:
        """Whether `existing` (the live object of the desired name, not listed as a child) is another's."""
        conflict = existing and name_conflict(desired, existing, owner_uid)
        if conflict:
            self.conflicts.append(conflict)
            self._held.add((desired["kind"], desired["metadata"]["name"]))
        return bool(conflict)



@dataclass
class Written:
    """What writing a resource's children did: the children as they now are, the writes, and what
    kept a child from being written (an apply the API server refused, an add-on kind the cluster
    lacks, a name another owner holds)."""

    live: dict[tuple[str, str], dict[str, Any]]
    writes: int = 0
    apply_error: str | None = None
    unserved: list[dict[str, Any]] = field(default_factory=list)
    held: HeldChildren = field(default_factory=HeldChildren)


def keep_expanded_claim(desired: dict[str, Any], live: dict[str, Any] | None) -> dict[str, Any]:
    """A cache claim someone expanded by hand keeps its size: the API server refuses to shrink a
    claim, and a larger cache does no harm."""
    if desired["kind"] != "PersistentVolumeClaim" or live is None:
        return desired
    want = desired["spec"]["resources"]["requests"]["storage"]
    have = (((live.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
    if have is None or not parse_quantity(have) > parse_quantity(want):
        return desired
    kept = copy.deepcopy(desired)
    kept["spec"]["resources"]["requests"]["storage"] = have
    return kept


# ---------------------------------------------------------------- status

READY, PROGRESSING, DEGRADED = "Ready", "Progressing", "Degraded"
MAX_MESSAGE = 600  # keep conditions readable; the pod has the full text


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


def short_message(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


# A Python exception line ("ValueError: ..."), the form in which vLLM states why it stopped.
_ERROR_LINE = re.compile(r"\b[A-Za-z_.]*(Error|Exception|Exit)\b: \S")
# vLLM's API server process ends with this wrapper when its engine process died: the cause is above it.
_WRAPPER_LINES = ("Engine core initialization failed", "Failed core proc")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def last_log_line(log: str) -> str:
    """The line of a crashed engine's log that says why: its last exception line (skipping vLLM's
    "see root cause above" wrapper) with the indented detail lines pydantic prints under it, else
    its last non-empty line."""
    lines = [line.rstrip() for line in _ANSI.sub("", log).splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines)
              if _ERROR_LINE.search(line) and not any(w in line for w in _WRAPPER_LINES)]
    if not errors:
        return lines[-1].strip() if lines else ""
    quote = [lines[errors[-1]].strip()]
    for line in lines[errors[-1] + 1:errors[-1] + 3]:
        detail = line.strip()
        if detail == line or detail.startswith(("File ", "For further information", "^")):
            break  # not indented, or a traceback frame or a link: not part of the message
        quote.append(detail)
    return " ".join(quote)


def container_statuses(pod: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """A pod's `containerStatuses` or `initContainerStatuses` (`key`), none before the kubelet reports."""
    return (pod.get("status") or {}).get(key) or []


def missing_secret(pod: dict[str, Any]) -> str | None:
    """The kubelet's words for a Secret (or a key of one) that a container's environment refers to
    and that is not there ('secret "x" not found'): the operator may not read Secrets itself."""
    for status in container_statuses(pod, "initContainerStatuses") + container_statuses(pod, "containerStatuses"):
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CreateContainerConfigError":
            return waiting.get("message", "")
    return None


def stalled_status(generation: int | None, reason: str, message: str, next_step: str) -> dict[str, Any]:
    """Failed before any child was written: nothing rolls out until the spec or the operator changes."""
    message = short_message(message)
    return {
        "observedGeneration": generation,
        "phase": "Failed",
        "conditions": [
            {"type": READY, "status": "False", "reason": reason, "message": message, "observedGeneration": generation},
            {"type": PROGRESSING, "status": "False", "reason": "Stalled", "message": next_step,
             "observedGeneration": generation},
            {"type": DEGRADED, "status": "True", "reason": reason, "message": message,
             "observedGeneration": generation},
        ],
    }


def invalid_spec_status(generation: int | None, errors: list[str]) -> dict[str, Any]:
    """Status of a resource the API server accepted but the operator cannot render."""
    return stalled_status(generation, "InvalidSpec", "The spec cannot be served: " + "; ".join(errors), "Fix the spec.")


def with_transition_times(new: dict[str, Any], old: dict[str, Any] | None, now: str) -> dict[str, Any]:
    """Carry lastTransitionTime over from the old status when a condition's status did not change."""
    previous = {c["type"]: c for c in (old or {}).get("conditions") or []}
    conditions = []
    for condition in new.get("conditions") or []:
        before = previous.get(condition["type"])
        kept = before.get("lastTransitionTime") if before and before.get("status") == condition["status"] else None
        conditions.append({**condition, "lastTransitionTime": kept or now})
    return {**new, "conditions": conditions}


def transitions(old: dict[str, Any] | None, new: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Events to post: (type, reason, message) for a new problem, and for reaching or leaving Ready.

    Progress between Pending, Downloading and Starting is in status only (`kubectl get` shows the
    phase): at 1,000 resources an Event for each step was a third of the operator's writes."""
    old = old or {}
    events = []
    old_degraded: dict[str, Any] = next((c for c in old.get("conditions") or [] if c["type"] == DEGRADED), {})
    new_degraded: dict[str, Any] = next((c for c in new.get("conditions") or [] if c["type"] == DEGRADED), {})
    if new_degraded.get("status") == "True" and (
            old_degraded.get("status") != "True" or old_degraded.get("reason") != new_degraded.get("reason")):
        events.append(("Warning", new_degraded["reason"], new_degraded["message"]))
    if old.get("phase") != new.get("phase") and READY in (old.get("phase"), new.get("phase")):
        events.append(("Normal", "PhaseChanged", f"Phase changed from {old.get('phase') or 'None'} to {new['phase']}."))
    return events


def same_status(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Equal apart from transition times: then the operator writes nothing."""
    def strip(status: dict[str, Any] | None) -> dict[str, Any]:
        status = dict(status or {})
        status["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                                for c in status.get("conditions") or []]
        return status
    return strip(old) == strip(new)


def write_status(kube: Kube, raw: dict[str, Any], status: dict[str, Any], writes: int, kind: str,
                 events: Callable[[dict[str, Any] | None, dict[str, Any]], list[tuple[str, str, str]]]) -> Result:
    """Write status unless it is the same, and post the Events of its transitions (`events(old, new)`)."""
    old = raw.get("status")
    if same_status(old, status):
        return Result(status["phase"], writes)
    namespace, name = raw["metadata"]["namespace"], raw["metadata"]["name"]
    kube.apply_status(namespace, name, with_transition_times(status, old, now()), kind)
    writes += 1
    for event_type, reason, message in events(old, status):
        kube.post_event(raw, event_type, reason, message, kind)
        writes += 1
    log.info("Updated status of %s %s/%s: phase %s", kind, namespace, name, status["phase"])
    return Result(status["phase"], writes)
