"""kafka.connect_timeout_s: the first look a one-shot command takes at the broker (streams.topics), against real
sockets: one refusing (nothing listens), one listening, and the session's tansu broker."""
from __future__ import annotations

import socket
import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.config.kafka import KafkaSettings
from streams.embedded import free_port
from streams.topics import bootstrap_addresses, check_broker_reachable


def test_bootstrap_servers_are_read_as_librdkafka_reads_them():
    assert bootstrap_addresses("a:9093, SASL_SSL://b.example:19092,[::1]:9094,c") == [
        ("a", 9093), ("b.example", 19092), ("::1", 9094), ("c", 9092)]


def test_a_refused_address_is_reported_at_once_and_one_live_server_is_enough(broker):
    closed = free_port()
    started = time.monotonic()
    with pytest.raises(KafkaException) as refused:
        check_broker_reachable(KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed}"))
    assert time.monotonic() - started < 2
    assert refused.value.args[0].code() == KafkaError._TRANSPORT
    assert f"no broker reachable: 127.0.0.1:{closed}: Connection refused" in str(refused.value)
    check_broker_reachable(KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed},{broker}"))  # the live one answers
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        check_broker_reachable(KafkaSettings(bootstrap_servers=f"127.0.0.1:{listening.getsockname()[1]}"))
