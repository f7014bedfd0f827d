"""URL checks find unescaped passwords without ever printing them."""

import pytest

from entrypoint.urls import parse, problems_in_url


@pytest.mark.parametrize("url", [
    "redis://:secret@redis:6379/0",
    "rediss://default:s%40cr%2Ft@redis.example:6380/2",
    "postgresql+psycopg2://airflow:p%23w@db:5432/airflow",
    "db+postgresql://airflow:pw@db/airflow",
    "redis://redis:6379",
])
def test_good_urls(url):
    assert problems_in_url("X", url) == []


@pytest.mark.parametrize("password", ["p@ss", "pa/ss", "p#ss", "p?ss", "a:b@c", "50%off",
                                      "x/y@z", "pQz@sk/wXrdZ"])
@pytest.mark.parametrize("template", ["redis://:{}@redis:6379/0",
                                      "postgresql+psycopg2://airflow:{}@db:5432/airflow"])
def test_unescaped_passwords(template, password):
    problems = problems_in_url("AIRFLOW__X", template.format(password))
    assert problems, template.format(password)
    text = "\n".join(problems)
    assert "percent-encode" in text
    for fragment in {password, *password.replace("@", "/").split("/")}:
        if len(fragment) >= 3:
            assert fragment not in text


def test_parse_unquotes_credentials_and_defaults_ports():
    endpoint = parse("rediss://user:s%40cret@cache.example/1")
    assert (endpoint.scheme, endpoint.host, endpoint.port) == ("rediss", "cache.example", 6379)
    assert (endpoint.username, endpoint.password) == ("user", "s@cret")
    assert parse("db+postgresql://a:b@h/d").port == 5432


def test_not_a_url():
    assert "not a URL" in problems_in_url("X", "localhost:6379")[0]
