"""What the demo organisation looks like: its projects, teams, people and repositories,
and how busy each repository is and how its service ships."""

from __future__ import annotations

from dataclasses import dataclass

#: The ``source`` of every demo row.
DEMO_SOURCE = "demo"
#: Seed used when none is given.
DEFAULT_SEED = 42
#: Days of history.
DEFAULT_DAYS = 365

PROJECTS: tuple[tuple[str, str], ...] = (
    ("PAY", "Payments"), ("SHOP", "Storefront"), ("PLAT", "Platform"),
)
TEAMS: tuple[tuple[str, str, str], ...] = (
    ("payments-core", "Payments Core", "PAY"),
    ("checkout", "Checkout", "SHOP"),
    ("catalog", "Catalog", "SHOP"),
    ("platform", "Platform", "PLAT"),
)
FIRST_NAMES = (
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret",
    "Dennis", "Radia", "Linus", "Katherine", "John", "Hedy", "Tim", "Shafi", "Niklaus",
    "Sophie", "Bjarne", "Anita", "Guido", "Karen", "Leslie", "Mary", "Yukihiro", "Joan", "Rob",
)
LAST_NAMES = (
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
    "Hamilton", "Ritchie", "Perlman", "Torvalds", "Johnson", "Backus", "Lamarr", "Berners",
    "Goldwasser", "Wirth", "Wilson", "Stroustrup", "Borg", "Rossum", "Jones", "Lamport",
    "Keller", "Matsumoto", "Clarke", "Pike",
)
#: UTC offsets (minutes) people work in.
TIME_ZONES = (0, 60, 120, -300, 330, 60, -480)
VERBS = ("Add", "Fix", "Refactor", "Speed up", "Remove", "Document", "Harden", "Simplify")
NOUNS = (
    "retry of payment capture", "invoice rounding", "cart totals", "search ranking",
    "login throttling", "webhook signature check", "price cache", "order export",
    "inventory sync", "feature flags", "audit logging", "connection pooling", "email templates",
    "rate limiter", "currency conversion", "session refresh", "image resizing", "health checks",
)
INCIDENT_TITLES = (
    "Elevated 5xx rate", "Checkout latency above SLO", "Payment captures failing",
    "Queue backlog growing", "Login errors for some users", "Stale prices shown",
    "Memory exhaustion on workers", "Webhook deliveries delayed",
)
FILES = ("src/api.py", "src/models.py", "src/service.py", "tests/test_api.py", "README.md",
         "src/db.py", "web/app.tsx", "deploy/values.yaml")
ITEM_STATUSES = (("To Do", "todo"), ("In Progress", "in_progress"),
                 ("In Review", "in_progress"), ("Done", "done"))


@dataclass(frozen=True)
class RepositoryPlan:
    """How busy a repository is and how its service ships.

    :param prs_per_week: mean pull requests opened per week.
    :param deploy_weekdays: weekdays (Monday = 0) with production deployment slots.
    :param deploy_hours: UTC hours of the slots on those days.
    :param every_weeks: deploy only every n-th week.
    :param change_failure: chance a production deployment causes an incident.
    :param deploy_failure: chance a deployment fails (and is retried).
    """

    name: str
    project: str
    team: str
    prs_per_week: float
    deploy_weekdays: tuple[int, ...]
    deploy_hours: tuple[float, ...]
    every_weeks: int
    change_failure: float
    deploy_failure: float


REPOSITORIES: tuple[RepositoryPlan, ...] = (
    RepositoryPlan("payments-api", "PAY", "payments-core", 14, (0, 1, 2, 3, 4), (10.5, 15.0), 1,
                   0.04, 0.03),
    RepositoryPlan("payments-worker", "PAY", "payments-core", 6, (0, 1, 2, 3, 4), (14.0,), 1,
                   0.05, 0.04),
    RepositoryPlan("storefront-web", "SHOP", "checkout", 12, (0, 2, 4), (11.0,), 1, 0.08, 0.05),
    RepositoryPlan("checkout-service", "SHOP", "checkout", 8, (1, 3), (13.0,), 1, 0.12, 0.06),
    RepositoryPlan("catalog-service", "SHOP", "catalog", 6, (2,), (12.0,), 1, 0.15, 0.08),
    RepositoryPlan("platform-infra", "PLAT", "platform", 4, (3,), (9.5,), 2, 0.2, 0.1),
)
#: Services nothing in the demo deploys: their incidents are never linked to a deployment.
EXTERNAL_SERVICES = ("cdn", "payments-gateway", "dns")
