#!/usr/bin/env python
"""Search benchmark.

    .venv/bin/python bench/search.py [--conversations 10000] [--messages 20]
    DATABASE_URL=postgres://…/scratch .venv/bin/python bench/search.py

One user with 10,000 conversations of 20 messages each (questions, answers and reasoning in
mixed Chinese and English, made with bulk_create, so the same triggers and indexes as in
production fill the index), and another user with a tenth as many, whose rows must never
show. Prints the server time of `/api/search` (median and minimum of several requests through
Django's test client in this process, with the machine's load average, on which they depend)
for a two-character Chinese query and an English word (the budget: first page ≤ 50 ms), and,
for the record, rarer terms (a rare two-character one followed to its last page), the
reasoning toggle and a later page. Without DATABASE_URL it uses a fresh SQLite file; with it,
a scratch PostgreSQL database (its tables are created and filled). `--reuse` measures the data
of an earlier run again (R1CHAT_DATA_DIR names the SQLite run's folder, printed as "data").
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHINESE = [
    "我们先看一下这个问题的背景。",
    "这个方法可以快速定位性能瓶颈。",
    "在中国，很多团队使用开源数据库。",
    "首先需要安装依赖，然后运行测试。",
    "下面给出一个完整的示例代码。",
    "这种写法更容易维护，也更安全。",
    "如果数据量很大，建议建立索引。",
    "快速排序的平均时间复杂度是 O(n log n)。",
    "请注意内存占用和并发访问的问题。",
    "总结一下：先测量，再优化。",
    "这个函数返回一个列表，每个元素是字典。",
    "用户可以在设置页面修改语言。",
    "服务器每秒处理大约一千个请求。",
    "我们可以用缓存减少数据库查询。",
    "中国的高铁网络覆盖了大部分城市。",
    "模型在回答之前会先进行推理。",
    "日志里记录了每一次错误的详细信息。",
    "部署之前请备份所有数据。",
    "这段代码在 Python 3.12 上运行良好。",
    "可以把配置写进环境变量里。",
    "快速入门指南介绍了最常用的命令。",
    "网络延迟会影响首个令牌的时间。",
    "翻译文件需要重新编译才能生效。",
    "让我们一步一步地思考这个问题。",
]
ENGLISH = [
    "Let me think about this step by step.",
    "The database keeps one row per message.",
    "You can add an index to speed up the query.",
    "Here is a complete example in Python.",
    "This approach avoids a full table scan.",
    "First install the dependencies, then run the tests.",
    "The answer depends on the size of the input.",
    "Use a connection pool to limit open connections.",
    "The server streams tokens as they are generated.",
    "A cache in front of the API reduces the latency.",
    "Remember to escape user input before rendering it.",
    "The model writes its reasoning before the answer.",
    "Sorting the list first makes the search logarithmic.",
    "Check the logs for the exact error message.",
    "Migrations change the schema without losing data.",
    "The benchmark measures the time on the server.",
    "Translations live in the locale directory.",
    "Tests run against both databases in CI.",
    "The function returns a dictionary of results.",
    "Keep the configuration in environment variables.",
]
TITLES = [
    "Python 性能优化", "如何设计数据库索引", "Deploying with Docker", "React state question",
    "周末旅行计划", "Explain quicksort", "机器学习入门", "SQL join types", "写一封求职信",
    "Debugging a memory leak", "中国历史简述", "Rust ownership", "咖啡的冲泡方法",
    "Kubernetes basics", "如何学习英语", "Regex for emails", "健身计划", "Async IO in Python",
]  # fmt: skip
RARE_EN = "zeppelin"  # in about 1 conversation in 1,000
RARE_ZH = "鲸鱼"  # likewise


def text(rng: random.Random, sentences: int) -> str:
    parts = []
    for _ in range(sentences):
        pool = CHINESE if rng.random() < 0.55 else ENGLISH
        parts.append(rng.choice(pool))
        if rng.random() < 0.15:
            parts.append("\n\n")
    return " ".join(parts)


def fill(user: Any, count: int, per: int, rng: random.Random) -> None:
    from django.utils import timezone

    from conversations.models import Conversation, Message

    now = timezone.now()
    chunk = 500
    for start in range(0, count, chunk):
        conversations = Conversation.objects.bulk_create(
            Conversation(
                owner=user,
                title=f"{rng.choice(TITLES)} {i}",
                created_at=now - timezone.timedelta(minutes=i * 90 + 30),
                updated_at=now - timezone.timedelta(minutes=i * 90),
            )
            for i in range(start, min(count, start + chunk))
        )
        messages = []
        for conversation in conversations:
            rare = rng.random() < 0.001
            for j in range(per):
                question = j % 2 == 0
                content = text(rng, rng.randint(1, 3) if question else rng.randint(5, 12))
                if rare and j == per - 1:
                    content += f" {RARE_EN} {RARE_ZH}"
                messages.append(
                    Message(
                        conversation=conversation,
                        role="user" if question else "assistant",
                        content=content,
                        reasoning="" if question else text(rng, rng.randint(4, 10)),
                        status="complete",
                        created_at=conversation.created_at + timezone.timedelta(seconds=j * 20),
                    )
                )
        Message.objects.bulk_create(messages, batch_size=2000)


def prepare_database() -> None:
    """What a database that has been in use a while has: statistics, merged index segments."""
    from django.db import connection

    from conversations.search import index

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE conversations_message")
            cursor.execute("VACUUM ANALYZE conversations_conversation")
        else:
            for table in (index.MESSAGE_FTS, index.TITLE_FTS):
                cursor.execute(f"INSERT INTO {table}({table}) VALUES ('optimize')")
            cursor.execute("ANALYZE")


def measure(client: Any, params: dict[str, str], repeat: int) -> tuple[float, float, int, dict]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    data: dict = {}
    queries = 0
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            response = client.get("/api/search", params)
            times.append(time.perf_counter() - start)
        assert response.status_code == 200, (params, response.status_code, response.content)
        data = response.json()
        queries = len(captured)
    return statistics.median(times) * 1000, min(times) * 1000, queries, data


def all_pages(client: Any, params: dict[str, str]) -> tuple[float, int, int]:
    """Server time to follow a query's cursor to its end: requests, results."""
    total, requests, found, cursor = 0.0, 0, 0, ""
    while True:
        start = time.perf_counter()
        data = client.get("/api/search", {**params, "cursor": cursor}).json()
        total += time.perf_counter() - start
        requests += 1
        found += len(data["results"])
        cursor = data.get("next")
        if not cursor:
            return total * 1000, requests, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure the data of an earlier run (in DATABASE_URL, or R1CHAT_DATA_DIR's SQLite)",
    )
    args = parser.parse_args()

    os.environ.setdefault("R1CHAT_DATA_DIR", tempfile.mkdtemp(prefix="r1chat-search-"))
    print(f"data: {os.environ.get('DATABASE_URL') or os.environ['R1CHAT_DATA_DIR']}")
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "r1chat.settings",
            "R1CHAT_HTTPS": "0",
            "R1CHAT_STATIC_MANIFEST": "0",
            "LOG_LEVEL": "WARNING",
            "ALLOWED_HOSTS": "testserver",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from tests.chat_support import make_user

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    user = None
    if args.reuse:
        user = get_user_model().objects.filter(username__startswith="search-").last()
    if user is None:
        rng = random.Random(28)
        suffix = f"{rng.randrange(10**6)}-{int(time.time())}"
        user = make_user(f"search-{suffix}", password=None)
        other = make_user(f"other-{suffix}", password=None)
        start = time.perf_counter()
        fill(user, args.conversations, args.messages, rng)
        fill(other, args.conversations // 10, args.messages, rng)
        print(f"loaded and indexed in {time.perf_counter() - start:.0f} s")
        prepare_database()
    conversations = user.conversations.count()
    print(
        f"r1chat search benchmark ({connection.vendor}): {conversations:,} conversations × "
        f"{args.messages} messages, plus a tenth as many of another user's; "
        f"median (and minimum) of {args.repeat}; load average {os.getloadavg()[0]:.1f}"
    )

    client = Client()
    client.force_login(user)
    client.get("/api/search", {"q": "warm up"})
    rows = [
        ("2-character Chinese «快速», first page", {"q": "快速"}),
        ("English word «database», first page", {"q": "database"}),
        ("3-character Chinese «数据库»", {"q": "数据库"}),
        ("«database» with reasoning", {"q": "database", "reasoning": "1"}),
        (f"rare English «{RARE_EN}» (~0.1 %)", {"q": RARE_EN}),
        (f"rare 2-character Chinese «{RARE_ZH}» (~0.1 %)", {"q": RARE_ZH}),
        ("no match «xylophone»", {"q": "xylophone"}),
    ]
    for label, params in rows:
        ms, least, queries, data = measure(client, params, args.repeat)
        count = len(data["results"])
        print(
            f"  {label + ':':<48}{ms:7.1f} ms (min {least:.1f}), {queries} queries, {count} results"
        )
        if params["q"] == RARE_ZH:
            total, requests, found = all_pages(client, params)
            label = "  every page of it:"
            print(f"  {label:<48}{total:7.1f} ms in {requests} requests, {found} results")
        if data.get("next") and params["q"] == "database" and "reasoning" not in params:
            for _ in range(4):
                data = client.get("/api/search", {**params, "cursor": data["next"]}).json()
            ms, least, queries, data = measure(
                client, {**params, "cursor": data["next"]}, args.repeat
            )
            label = "«database», sixth page:"
            print(f"  {label:<48}{ms:7.1f} ms (min {least:.1f}), {queries} queries")


if __name__ == "__main__":
    main()
