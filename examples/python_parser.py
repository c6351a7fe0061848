"""A crawl parser stage in Python: replaces the Rust `parser` for the example site's
list pages (platform `example_list`), on the runtime of python_worker.py.

Run with: python3 examples/python_parser.py --endpoint tcp://127.0.0.1:5556 --topic parsing [--store-topic store]

It takes parse tasks (the seed's local_task body with `urls` and `result` filled by
the fetcher) and returns one envelope for the storer: the same body with
`parsing_data[i]` = the rows read from `result[i]` (each row with its page `url`),
`result[i].html` emptied, and `callback.topic` = the storer's topic. `task_type`
(the table name) and the other body fields are kept as they came (docs/CRAWL.md).
It follows no links.
"""

import html
import re
import sys
from urllib.parse import urljoin

import python_worker

ITEM = re.compile(
    r'<li class="item"[^>]*><a class="title" href="([^"]*)">(.*?)</a>'
    r'<span class="price">(.*?)</span></li>',
    re.S,
)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def price(text):
    """The first number of `text`, commas ignored ("¥1,299.50" -> 1299.5)."""
    match = NUMBER.search(text.replace(",", ""))
    return float(match.group(0)) if match else None


def rows_of(result):
    """The rows of one fetch result: title, absolute link and price per item."""
    if not result.get("sucess"):
        return []
    page = result.get("url", "")
    rows = []
    for link, title, price_text in ITEM.findall(result.get("html", "")):
        rows.append({
            "title": html.unescape(title).strip(),
            "link": urljoin(page, html.unescape(link)),
            "price": price(html.unescape(price_text)),
            "url": page,
        })
    return rows


def make_handler(store_topic):
    def handle(task):
        body = dict(task["body"])
        results = body.get("result") or []
        body["parsing_data"] = [rows_of(r) for r in results]
        body["result"] = [dict(r, html="") for r in results]
        body["callback"] = dict(body.get("callback") or {}, topic=store_topic)
        if not any(body["parsing_data"]):
            raise python_worker.TaskError("no rows on any page", retryable=False)
        return [{"body": body}]

    return handle


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    store_topic = "store"
    if "--store-topic" in argv:
        at = argv.index("--store-topic")
        store_topic = argv[at + 1]
        del argv[at : at + 2]
    if "--stage" not in argv:
        argv += ["--stage", "python-parser"]
    return python_worker.main(argv, handler=make_handler(store_topic))


if __name__ == "__main__":
    sys.exit(main())
