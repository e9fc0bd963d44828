"""Parses Prometheus text format from stdin with the official client's parser and prints the
samples as JSON: [{"name", "labels", "value"}]. Fails on anything the parser rejects."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append({"name": s.name, "labels": s.labels, "value": s.value, "type": family.type})
print(json.dumps(samples))
