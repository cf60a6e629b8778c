"""Where an ``s3://`` URI's object is asked for: the bucket's URL that ``[storage]`` makes
(path-style by default beside an endpoint_url, virtual-hosted on AWS), the settings refused
at load because no URL can address the bucket, the signature of the doctor's listing (AWS's
published examples), and what the doctor makes of a store that answers for another bucket
(a store on loopback that lies)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from vidretry.config import ConfigError, StorageConfig, load_config, parse_config
from vidretry.results.base import StoreMisaddressed, StoreUnavailable
from vidretry.results.listing import Keys, check_listing, signed_headers, static_keys


def storage(**table: Any) -> StorageConfig:
    return parse_config({"storage": {"url": "s3://videos/bot", **table}}).storage


@pytest.mark.parametrize(
    ("table", "bucket_url"),
    [
        # What a user of MinIO, SeaweedFS, Ceph or R2 types: path-style, the bucket in the path.
        ({"endpoint_url": "http://127.0.0.1:8333"}, "http://127.0.0.1:8333/videos"),
        ({"endpoint_url": "https://s3.example.net/"}, "https://s3.example.net/videos"),
        ({"endpoint_url": "http://minio:9000", "path_style": True}, "http://minio:9000/videos"),
        # Virtual-hosted beside an endpoint: the bucket becomes a subdomain of its host.
        (
            {"endpoint_url": "https://s3.example.net:8443", "path_style": False},
            "https://videos.s3.example.net:8443",
        ),
        # The bucket's own endpoint, said to be one.
        (
            {"endpoint_url": "https://videos.s3.example.net", "path_style": False},
            "https://videos.s3.example.net",
        ),
        # AWS: virtual-hosted by default, in the configured region.
        ({}, "https://videos.s3.us-east-1.amazonaws.com"),
        ({"region": "eu-central-1"}, "https://videos.s3.eu-central-1.amazonaws.com"),
        ({"region": "eu-central-1", "path_style": True}, "https://s3.eu-central-1.amazonaws.com/videos"),
    ],
)  # fmt: skip
def test_the_bucket_is_addressed_where_the_uri_says(table: dict[str, Any], bucket_url: str) -> None:
    assert storage(**table).bucket_url == bucket_url


@pytest.mark.parametrize(
    ("url", "table", "refusal"),
    [
        # An IP address or a bare name has no subdomains for a bucket.
        ("s3://videos/bot", {"endpoint_url": "http://127.0.0.1:8333", "path_style": False},
         r"^\[storage\] path_style = false would address the bucket as videos\.127\.0\.0\.1, "
         r"which no name server knows: set \[storage\] path_style = true"),
        ("s3://videos/bot", {"endpoint_url": "http://localhost:9000", "path_style": False},
         r"set \[storage\] path_style = true"),
        # A bucket with dots fails a wildcard certificate as a subdomain.
        ("s3://videos.example/bot", {},
         r"^\[storage\] the bucket 'videos\.example' has dots: .* set \[storage\] path_style"),
        ("s3://videos.example/bot", {"endpoint_url": "https://s3.example.net", "path_style": False},
         r"has dots"),
        # An endpoint that begins with the bucket's name: the operator says which it is.
        ("s3://videos/bot", {"endpoint_url": "https://videos.s3.example.net"},
         r"^\[storage\] endpoint_url https://videos\.s3\.example\.net begins with the bucket's "
         r"name 'videos': give the store's endpoint .*set \[storage\] path_style = false"),
        # An endpoint with more than an address in it.
        ("s3://videos/bot", {"endpoint_url": "https://s3.example.net/?bucket=x"},
         r"^\[storage\] endpoint_url must be the store's address alone"),
        ("s3://videos/bot", {"endpoint_url": "https://key:secret@s3.example.net"},
         r"^\[storage\] endpoint_url must be the store's address alone"),
        # A path: the bucket's name again (the key would begin with it), or another bucket.
        ("s3://videos/results", {"endpoint_url": "http://127.0.0.1:8333/videos"},
         r"^\[storage\] endpoint_url must be the store's address without a path, got "
         r"'http://127\.0\.0\.1:8333/videos': the bucket and the prefix go in \[storage\] url"),
        ("s3://videos/results", {"endpoint_url": "http://127.0.0.1:8333/other/"},
         r"without a path"),
        ("s3://videos/results", {"endpoint_url": "https://s3.example.net/s3", "path_style": False},
         r"without a path"),
        # A prefix the S3 client cannot address: it would refuse every object.
        ("s3://videos/a//b", {}, r"^\[storage\] url's prefix must be names separated by "
         r"single slashes, none of them \"\.\" or \"\.\.\" and without control characters, "
         r"got 's3://videos/a//b'$"),
        ("s3://videos/../r", {}, r"url's prefix must be names"),
        ("s3://videos/a/./b", {}, r"url's prefix must be names"),
        ("s3://videos//bot", {}, r"url's prefix must be names"),
        ("s3://videos/bot\x07", {}, r"url's prefix must be names"),
        ("s3://videos/" + "p" * 901, {}, r"url's prefix must be at most 900 bytes"),
        # Half a key in the file: the other half would come from the environment.
        ("s3://videos/bot", {"access_key_id": "AKIA"},
         r"^\[storage\] access_key_id and secret_access_key go together"),
        ("s3://videos/bot", {"secret_access_key": "s"}, r"go together"),
        # S3's settings on a directory.
        ("file:///srv/videos", {"path_style": True},
         r"^\[storage\] endpoint_url, region, path_style and keys are for an s3:// url$"),
    ],
)  # fmt: skip
def test_a_bucket_that_cannot_be_addressed_is_refused_at_load_naming_the_key(
    url: str, table: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(ConfigError, match=refusal):
        parse_config({"storage": {"url": url, **table}})


@pytest.mark.parametrize("url", ["s3://videos/a b", "s3://videos/bot/", "s3://videos/видео/2026"])
def test_a_prefix_of_plain_names_is_taken_as_written(url: str) -> None:
    parse_config({"storage": {"url": url, "endpoint_url": "http://127.0.0.1:8333/"}})


def test_the_dotted_bucket_is_addressed_path_style_when_told() -> None:
    dotted = parse_config({"storage": {"url": "s3://videos.example/bot", "path_style": True}})
    assert dotted.storage.bucket_url == "https://s3.us-east-1.amazonaws.com/videos.example"


def test_the_region_comes_from_the_standard_environment_when_unset(tmp_path: Any) -> None:
    config = tmp_path / "vidretry.toml"
    config.write_text('[storage]\nurl = "s3://videos/bot"\n')
    env = {"AWS_DEFAULT_REGION": "eu-west-3"}
    assert (
        load_config(config, env).storage.bucket_url == "https://videos.s3.eu-west-3.amazonaws.com"
    )
    env["AWS_REGION"] = "eu-north-1"
    assert load_config(config, env).storage.region == "eu-north-1"
    config.write_text('[storage]\nurl = "s3://videos/bot"\nregion = "ap-south-1"\n')
    assert load_config(config, env).storage.region == "ap-south-1"  # the file's word wins


# AWS's published examples of Signature Version 4 for S3 ("Examples: Signature Calculations
# in AWS Signature Version 4", header-based authentication, a request without a body).
EXAMPLE_KEYS = Keys("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
EXAMPLE_TIME = datetime(2013, 5, 24, tzinfo=UTC)


def test_the_listing_is_signed_as_aws_signs_its_examples() -> None:
    get_object = signed_headers(
        "GET", "https://examplebucket.s3.amazonaws.com/test.txt", EXAMPLE_KEYS, "us-east-1",
        EXAMPLE_TIME, {"Range": "bytes=0-9"},
    )  # fmt: skip
    assert get_object["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    list_objects = signed_headers(
        "GET", "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J", EXAMPLE_KEYS,
        "us-east-1", EXAMPLE_TIME,
    )  # fmt: skip
    assert list_objects["Authorization"].endswith(
        "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    )
    assert list_objects["x-amz-date"] == "20130524T000000Z"
    with_token = signed_headers(
        "GET", "https://examplebucket.s3.amazonaws.com/", Keys("A", "B", "a-token"), "us-east-1",
        EXAMPLE_TIME,
    )  # fmt: skip
    assert with_token["x-amz-security-token"] == "a-token"
    assert "x-amz-security-token" in with_token["Authorization"]


def test_the_keys_are_the_configured_ones_else_the_environments() -> None:
    env = {"AWS_ACCESS_KEY_ID": "E", "AWS_SECRET_ACCESS_KEY": "S", "AWS_SESSION_TOKEN": "T"}
    assert static_keys("C", "CS", env) == Keys("C", "CS")
    assert static_keys(None, None, env) == Keys("E", "S", "T")
    assert static_keys(None, None, {}) is None  # an instance's role: the client fetches them
    assert repr(Keys("E", "secret", "token")) == "Keys(access_key_id='E')"


@pytest.fixture
def lying_store() -> Iterator[tuple[str, list[tuple[int, bytes]]]]:
    """An S3 "store" on loopback that answers every request with the next of the answers
    the test gives it (status, body), and records nothing."""
    answers: list[tuple[int, bytes]] = []

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers.pop(0)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answers
    finally:
        server.shutdown()
        server.server_close()


NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def listing(name: str, prefix: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult {NS}><Name>{name}</Name>'
        f"<Prefix>{prefix}</Prefix><KeyCount>0</KeyCount><MaxKeys>1</MaxKeys>"
        "<IsTruncated>false</IsTruncated></ListBucketResult>"
    ).encode()


def test_the_doctor_fails_loudly_on_a_store_that_answers_for_another_bucket(
    lying_store: tuple[str, list[tuple[int, bytes]]],
) -> None:
    endpoint, answers = lying_store
    bucket_url = f"{endpoint}/videos"

    def check() -> None:
        check_listing(bucket_url, "videos", "bot/", Keys("A", "B"), "us-east-1", EXAMPLE_TIME)

    answers.append((200, listing("videos", "bot/")))
    check()  # the bucket's own listing of the prefix

    answers.append((200, listing("results", "")))  # what obstore's old addressing reached
    with pytest.raises(StoreMisaddressed) as other:
        check()
    assert str(other.value) == (
        f"s3://videos/bot/ at {bucket_url} answers for bucket 'results' (prefix ''), not "
        "'videos' (prefix 'bot/'): videos would not be where their URIs say; check [storage] "
        "endpoint_url and path_style"
    )

    answers.append((200, listing("videos", "")))  # the prefix dropped on the way
    with pytest.raises(StoreMisaddressed, match="prefix ''"):
        check()

    buckets = f"<ListAllMyBucketsResult {NS}><Buckets/></ListAllMyBucketsResult>".encode()
    answers.append((200, buckets))  # the service's root: a list of buckets
    with pytest.raises(StoreMisaddressed, match="with 200 ListAllMyBucketsResult, not the bucket"):
        check()

    no_bucket = b"<Error><Code>NoSuchBucket</Code><BucketName>videos</BucketName></Error>"
    answers.append((404, no_bucket))
    with pytest.raises(StoreMisaddressed, match=r"404 NoSuchBucket.*that the bucket exists"):
        check()

    answers.append((200, b"<html>a web server, not a store</html>"))
    with pytest.raises(StoreMisaddressed, match="with 200 html"):
        check()

    answers.append((301, b""))  # a redirect is not followed with the signature
    with pytest.raises(StoreMisaddressed, match="301 no XML"):
        check()

    answers.append((403, b"<Error><Code>AccessDenied</Code></Error>"))
    with pytest.raises(StoreUnavailable, match=r"refused us a listing \(AccessDenied\)"):
        check()

    answers.append((503, b"<Error><Code>SlowDown</Code></Error>"))
    with pytest.raises(StoreUnavailable, match="503 SlowDown"):
        check()
