"""The README's "Try it" walk-through, through a Python client generated from api/openapi.json.

Run by scripts/client-demo.sh (part of `make test`), which generates the client package
`product_catalog_client` with openapi-python-client, type-checks this file against it with
mypy --strict, serves tests/fixtures/images over HTTP and points this at a running API:

    python demo.py <api base URL> <demo images base URL>

Every step checks what the README promises and exits non-zero with the reason when it does
not hold.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any, TypeVar

import httpx

from product_catalog_client import AuthenticatedClient
from product_catalog_client.api.health import readyz
from product_catalog_client.api.products import (
    create_product,
    delete_product,
    get_product,
    list_products,
    update_product,
)
from product_catalog_client.api.users import create_user
from product_catalog_client.models import (
    CreateProduct,
    CreateUser,
    ImageState,
    ImageStatus,
    ProcessingStatus,
    Problem,
    Product,
    ProductCreated,
    UpdateProduct,
    User,
)
from product_catalog_client.types import UNSET, Response, Unset

T = TypeVar("T")


class DemoFailed(Exception):
    pass


def step(text: str) -> None:
    print(f"[demo] {text}", flush=True)


# What each format's files begin with: WebP is a RIFF container, AVIF an ISO-BMFF `ftyp` box.
MAGIC = {
    "image/webp": lambda body: body[:4] == b"RIFF" and body[8:12] == b"WEBP",
    "image/avif": lambda body: body[4:12] == b"ftypavif",
}


def picture(image: ImageState, alt: str) -> str:
    """The markup a storefront writes for one compressed image: AVIF where the browser takes
    it, WebP otherwise, the browser choosing the width; the box keeps the aspect ratio and
    shows the dominant colour until the pixels arrive."""
    if (
        isinstance(image.srcset, Unset)
        or isinstance(image.variants, Unset)
        or isinstance(image.dominant_color, Unset)
        or isinstance(image.source_width, Unset)
        or isinstance(image.source_height, Unset)
        or isinstance(image.compressed_url, Unset)
    ):
        raise DemoFailed(f"a compressed image lacks its variants or placeholders: {image}")
    sets = image.srcset.additional_properties
    sources = "".join(
        f'\n  <source type="{kind}" srcset="{sets[kind]}" sizes="(max-width: 640px) 100vw, 640px">'
        for kind in ("image/avif", "image/webp")
        if kind in sets
    )
    return (
        f"<picture>{sources}\n"
        f'  <img src="{image.compressed_url}" alt="{alt}" width="{image.source_width}" '
        f'height="{image.source_height}" style="background:{image.dominant_color}">\n'
        "</picture>"
    )


def check_variants(image: ImageState) -> int:
    """Downloads every variant and checks its format and byte count; returns how many."""
    if isinstance(image.variants, Unset) or not image.variants:
        raise DemoFailed(f"a compressed image has no variants: {image}")
    for variant in image.variants:
        body = httpx.get(variant.url, timeout=10).raise_for_status().content
        if not MAGIC[variant.format_](body) or len(body) != variant.bytes_:
            raise DemoFailed(f"{variant.url} is not the {variant.format_} of {variant.bytes_} bytes it claims")
    return len(image.variants)


def expect(response: Response[Any], status: int, kind: type[T]) -> T:
    """The parsed body of a response that must have `status` and be a `kind`."""
    parsed = response.parsed
    if response.status_code != status or not isinstance(parsed, kind):
        raise DemoFailed(
            f"expected {status} with a {kind.__name__}, got {response.status_code.value}: "
            f"{response.content.decode(errors='replace')[:500]}"
        )
    return parsed


def wait_for_images(client: AuthenticatedClient, product_id: int, deadline_secs: float) -> Product:
    """Polls the product until no image is pending, or fails after the deadline."""
    deadline = time.monotonic() + deadline_secs
    while True:
        product = expect(get_product.sync_detailed(product_id, client=client), 200, Product)
        if product.processing_status != ProcessingStatus.PENDING:
            return product
        if time.monotonic() > deadline:
            raise DemoFailed(
                f"product {product_id} still pending after {deadline_secs} s: "
                f"{[i.status.value for i in product.images]}"
            )
        time.sleep(0.25)


def main(api: str, images: str, token: str) -> None:
    # A seller signed in at the issuer the api trusts (scripts/token.sh minted the token).
    client = AuthenticatedClient(
        base_url=api, token=token, raise_on_unexpected_status=True, timeout=httpx.Timeout(10.0)
    )

    step(f"readyz at {api}")
    readyz.sync_detailed(client=client)

    name = f"alice-{uuid.uuid4().hex[:8]}"
    user = expect(
        create_user.sync_detailed(
            client=client, body=CreateUser(username=name, email=f"{name}@example.com")
        ),
        201,
        User,
    )
    step(f"created user {user.user_id} ({user.username})")

    poster = expect(
        create_product.sync_detailed(
            client=client,
            body=CreateProduct(
                user_id=user.user_id,
                product_name="Rocket poster",
                product_description="Two photos and one missing image.",
                product_images=[f"{images}/rocket.jpg", f"{images}/chelsea.png", f"{images}/missing.jpg"],
                product_price=19.99,
            ),
        ),
        201,
        ProductCreated,
    )
    lamp = expect(
        create_product.sync_detailed(
            client=client,
            body=CreateProduct(
                user_id=int(user.user_id),
                product_name="Floor lamp",
                product_images=[f"{images}/rocket.jpg"],
                product_price="45.00",
            ),
        ),
        201,
        ProductCreated,
    )
    step(f"created products {poster.product_id} and {lamp.product_id} (price as a number and as a string)")

    # Two minutes: the processor's group may first have to recover on the local broker (a
    # member it still holds from an earlier run: the watchdog rejoins after 45 s without
    # progress, docs/operations.md "Consumer groups"); a healthy run takes seconds.
    product = wait_for_images(client, int(poster.product_id), deadline_secs=120)
    statuses = [i.status for i in product.images]
    if product.processing_status != ProcessingStatus.PARTLY_FAILED or statuses != [
        ImageStatus.COMPRESSED,
        ImageStatus.COMPRESSED,
        ImageStatus.FAILED,
    ]:
        raise DemoFailed(f"unexpected outcome {product.processing_status.value}: {statuses}")
    failed = product.images[2]
    if product.compressed_product_images[2] is not None or "404" not in str(failed.failure_reason):
        raise DemoFailed(f"the missing image should be null and failed with a 404: {failed}")
    for image, url in zip(product.images[:2], product.compressed_product_images[:2]):
        if url is None:
            raise DemoFailed("a compressed image has no URL")
        body = httpx.get(url, timeout=10).raise_for_status().content
        if body[:4] != b"RIFF" or body[8:12] != b"WEBP":
            raise DemoFailed(f"{url} is not a WebP image")
        step(f"compressed {image.source_url}: {image.bytes_before} → {len(body)} bytes, {url}")
        step(f"{check_variants(image)} variants downloaded; the storefront's markup:\n{picture(image, 'Poster')}")
    step(f"processing_status {product.processing_status.value}; failure: {failed.failure_reason}")

    seen: list[Product] = []
    cursor: str | None = None
    while True:
        page = list_products.sync_detailed(
            client=client,
            user_id=user.user_id,
            price_range="10-50",
            product_name="o",
            limit=1,
            cursor=cursor or UNSET,
        )
        seen.extend(expect(page, 200, list))
        cursor = page.headers.get("x-next-cursor")
        if not cursor:
            break
    names = [p.product_name for p in seen]
    if names != ["Rocket poster", "Floor lamp"]:
        raise DemoFailed(f"pages by price should hold the poster, then the lamp: {names}")
    step(f"listed {len(seen)} products one per page, by price: {names}")

    updated = expect(
        update_product.sync_detailed(
            int(poster.product_id), client=client, body=UpdateProduct(product_price=24.5)
        ),
        200,
        Product,
    )
    again = expect(get_product.sync_detailed(int(poster.product_id), client=client), 200, Product)
    if updated.product_price != 24.5 or again.product_price != 24.5:
        raise DemoFailed(f"the new price is not visible: {updated.product_price}, {again.product_price}")
    step("updated the price; the next GET shows it")

    delete_product.sync_detailed(int(lamp.product_id), client=client)
    gone = expect(get_product.sync_detailed(int(lamp.product_id), client=client), 404, Problem)
    step(f"deleted product {lamp.product_id}; GET says {gone.status} {gone.title}")

    problem = expect(
        create_product.sync_detailed(
            client=client,
            body=CreateProduct(
                user_id=user.user_id, product_name="", product_images=["ftp://x"], product_price=1.999
            ),
        ),
        422,
        Problem,
    )
    fields = sorted(e.field for e in problem.errors)
    if fields != ["product_images[0]", "product_name", "product_price"]:
        raise DemoFailed(f"the problem should name the three bad fields: {fields}")
    step(f"invalid product refused: {problem.status} naming {fields}")

    # For subscriber.py: the events these steps must have published.
    with open("demo-ids.json", "w") as out:
        json.dump(
            {
                "created": [poster.product_id, lamp.product_id],
                "deleted": [lamp.product_id],
                "compressed": [poster.product_id],
            },
            out,
        )
    step("done")


if __name__ == "__main__":
    try:
        main(sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/"), sys.argv[3])
    except DemoFailed as failure:
        print(f"[demo] FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
