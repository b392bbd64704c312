"""Creates a blob container on an Azurite (or Azure) blob endpoint with Shared Key auth.

object_store and delta-rs never create containers, and the tests must not depend on the Azure
SDK for this one request, so it is signed here with the standard library:
https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key

usage: azurite_container.py <account-endpoint-url> <account> <base64-key> <container>
(the endpoint includes the account for Azurite's path-style URLs: http://127.0.0.1:P/account)
"""

import base64
import hashlib
import hmac
import sys
import urllib.error
import urllib.parse
import urllib.request
from email.utils import formatdate

VERSION = "2021-08-06"


def create_container(endpoint: str, account: str, key: str, container: str) -> None:
    url = f"{endpoint.rstrip('/')}/{container}?restype=container"
    date = formatdate(usegmt=True)
    path = urllib.parse.urlparse(url).path
    canonical_headers = f"x-ms-date:{date}\nx-ms-version:{VERSION}\n"
    canonical_resource = f"/{account}{path}\nrestype:container"
    # VERB, then 11 standard headers (all empty for this request), then ours.
    to_sign = "PUT\n" + "\n" * 11 + canonical_headers + canonical_resource
    signature = base64.b64encode(
        hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    request = urllib.request.Request(
        url,
        method="PUT",
        # No body: with one, urllib would add a Content-Type that the signature must name.
        headers={
            "Content-Length": "0",
            "x-ms-date": date,
            "x-ms-version": VERSION,
            "Authorization": f"SharedKey {account}:{signature}",
        },
    )
    try:
        urllib.request.urlopen(request, timeout=30).close()
    except urllib.error.HTTPError as error:
        if error.code != 409:  # ContainerAlreadyExists
            raise SystemExit(f"create container {container}: HTTP {error.code}: {error.read()!r}")


if __name__ == "__main__":
    create_container(*sys.argv[1:5])
