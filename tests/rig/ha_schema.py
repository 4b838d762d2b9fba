"""The JSON Schema of Home Assistant's device discovery (written from the HA docs) and a checker for payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA = json.loads((Path(__file__).parent / "ha_mqtt_discovery.schema.json").read_text())
# From HA core components/mqtt/abbreviations.py: the abbreviations HA expands before validating.
ROOT = {
    "dev": "device",
    "o": "origin",
    "cmps": "components",
    "avty_t": "availability_topic",
    "avty": "availability",
    "avty_mode": "availability_mode",
}
COMPONENT = {
    "p": "platform",
    "uniq_id": "unique_id",
    "stat_t": "state_topic",
    "cmd_t": "command_topic",
    "val_tpl": "value_template",
    "dev_cla": "device_class",
    "stat_cla": "state_class",
    "unit_of_meas": "unit_of_measurement",
    "ent_cat": "entity_category",
    "ic": "icon",
    "pl_prs": "payload_press",
    "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template",
    "avty_t": "availability_topic",
    "avty": "availability",
    "avty_mode": "availability_mode",
}
AVAILABILITY = {"t": "topic", "pl_avail": "payload_available", "pl_not_avail": "payload_not_available"}
DEVICE = {"ids": "identifiers", "cns": "connections", "mf": "manufacturer", "mdl": "model", "sw": "sw_version"}
ORIGIN = {"sw": "sw_version", "url": "support_url"}


def expand(payload: dict[str, Any]) -> dict[str, Any]:
    """Expand abbreviations the way Home Assistant does before it applies its schemas."""
    out = {ROOT.get(k, k): v for k, v in payload.items()}
    for key, names in (("device", DEVICE), ("origin", ORIGIN)):
        if isinstance(out.get(key), dict):
            out[key] = {names.get(k, k): v for k, v in out[key].items()}
    out["components"] = {
        key: _availability({COMPONENT.get(k, k): v for k, v in value.items()})
        for key, value in out["components"].items()
    }
    return _availability(out)


def _availability(entity: dict[str, Any]) -> dict[str, Any]:
    """Expand the abbreviations inside an `availability` list (HA does this for each item)."""
    if isinstance(entity.get("availability"), list):
        entity["availability"] = [
            {AVAILABILITY.get(k, k): v for k, v in item.items()} if isinstance(item, dict) else item
            for item in entity["availability"]
        ]
    return entity


def check(payload: bytes) -> dict[str, Any]:
    """Validate one discovery payload; returns it expanded."""
    expanded = expand(json.loads(payload))
    errors = sorted(Draft202012Validator(SCHEMA).iter_errors(expanded), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    for component in expanded["components"].values():
        if component["platform"] == "text":
            assert component.get("min", 0) < component.get("max", 255)  # HA: min must be below max
    return expanded
