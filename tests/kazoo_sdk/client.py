"""Drives `tally serve` with the third-party Kazoo client `kazoo-sdk` 0.2.4 (issue 12).

Run by tests/it/kazoo_sdk.rs against a seeded database; every value it needs comes
from the environment:

  TALLY_BASE_URL        http://127.0.0.1:PORT/v2
  KAZOO_API_KEY         the reseller's api key
  KAZOO_RESELLER_ID     the reseller (vendor of the plans)
  KAZOO_ACCOUNT_ID      a customer of the reseller
  KAZOO_USERNAME, KAZOO_PASSWORD, KAZOO_ACCOUNT_NAME   a user of the customer
  KAZOO_PLAN_IDS        comma-separated plan ids in the reseller's catalog
  KAZOO_EXPIRED_TOKEN   a token of the reseller that has expired

The client is used as its users use it: `authenticate()`, the generated
`get_service_plans` / `get_service_plan` / `update_service_plan` /
`delete_service_plan`, `add_service_plans_to_account` and `manual_request`.
Exit status 0 means every step held; a failed step raises with what it saw.
"""

import os
import sys
import time

import kazoo
from kazoo.exceptions import KazooApiAuthenticationError, KazooApiError


def env(name):
    value = os.environ.get(name)
    if not value:
        raise SystemExit("missing environment variable " + name)
    return value


BASE = env("TALLY_BASE_URL")
API_KEY = env("KAZOO_API_KEY")
RESELLER = env("KAZOO_RESELLER_ID")
ACCOUNT = env("KAZOO_ACCOUNT_ID")
PLANS = env("KAZOO_PLAN_IDS").split(",")
EXPIRED = env("KAZOO_EXPIRED_TOKEN")


def step(name):
    print("kazoo-sdk: " + name, flush=True)


def check(condition, what, seen):
    if not condition:
        raise AssertionError("{0}; saw {1!r}".format(what, seen))


def manual(client, uri, method="get", data=None):
    ok, answer = client.manual_request(uri, method, data=data)
    if not ok:
        raise AssertionError(
            "{0} {1} answered {2}: {3}".format(method.upper(), uri, answer.status_code, answer.text)
        )
    return answer


def assigned_plans(client):
    services = manual(client, "/accounts/{0}/services".format(ACCOUNT))
    return sorted(services.get("plans", {}).keys()) if "plans" in services else sorted(services.keys())


def main():
    step("authenticate with an api key")
    reseller = kazoo.Client(api_key=API_KEY, base_url=BASE)
    token = reseller.authenticate()
    check(isinstance(token, str) and len(token) == 64, "an auth token", token)
    check(reseller.auth_data["data"]["account_id"] == RESELLER, "the reseller's account", reseller.auth_data)

    step("authenticate with user credentials")
    user = kazoo.Client(
        username=env("KAZOO_USERNAME"),
        password=env("KAZOO_PASSWORD"),
        account_name=env("KAZOO_ACCOUNT_NAME"),
        base_url=BASE,
    )
    user.authenticate()
    check(user.auth_data["data"]["account_id"] == ACCOUNT, "the user's account", user.auth_data)
    check(user.auth_data["data"].get("owner_id"), "the user as owner", user.auth_data)

    step("bad credentials are refused")
    try:
        kazoo.Client(api_key="0" * 64, base_url=BASE).authenticate()
        raise AssertionError("an unknown api key logged in")
    except KazooApiAuthenticationError:
        pass

    step("list and get plans")
    listed = reseller.get_service_plans(RESELLER)["data"]
    listed_ids = sorted(plan["id"] for plan in listed)
    check(listed_ids == sorted(PLANS), "the reseller's catalog", listed)
    plan = reseller.get_service_plan(RESELLER, PLANS[0])["data"]
    check(plan.get("id") == PLANS[0] and "plan" in plan, "a plan document", plan)
    try:
        reseller.get_service_plan(RESELLER, "no_such_plan")
        raise AssertionError("an unknown plan was found")
    except KazooApiError:
        pass

    step("add plans to the account")
    added = reseller.add_service_plans_to_account(ACCOUNT, [PLANS[0]])
    check(added[0] is True, "add_service_plans_to_account succeeds", added)
    reseller.update_service_plan(ACCOUNT, PLANS[1], {"id": PLANS[1]})
    check(assigned_plans(reseller) == sorted(PLANS[:2]), "both plans assigned", assigned_plans(reseller))

    step("remove a plan from the account")
    reseller.delete_service_plan(ACCOUNT, PLANS[1])
    check(assigned_plans(reseller) == [PLANS[0]], "one plan left", assigned_plans(reseller))

    step("summary and quote through manual_request")
    summary = manual(user, "/accounts/{0}/services/summary".format(ACCOUNT))
    check("invoices" in summary, "a summary with invoices", summary)
    check(len(summary["invoices"]) >= 1, "an invoice for the assigned plan", summary)
    quote = manual(
        reseller,
        "/accounts/{0}/services/quote".format(ACCOUNT),
        "post",
        data={"data": {"plans": PLANS}},
    )
    check("invoices" in quote, "a quote with invoices", quote)
    manual_quantities = manual(
        reseller,
        "/accounts/{0}/services/manual".format(ACCOUNT),
        "post",
        data={"data": {"devices": {"sip_device": 2}}},
    )
    check(manual_quantities.get("devices", {}).get("sip_device") == 2, "manual quantities stored", manual_quantities)

    step("an expired token makes the client log in again")
    remaining = float(os.environ.get("KAZOO_EXPIRED_TOKEN_WAIT", "0"))
    if remaining > 0:
        time.sleep(remaining)
    reseller.auth_token = EXPIRED
    reseller._authenticated = True
    listed_again = reseller.get_service_plans(RESELLER)["data"]
    check(len(listed_again) == len(PLANS), "the listing after logging in again", listed_again)
    check(reseller.auth_token not in (None, EXPIRED), "a new token", reseller.auth_token)

    step("every step held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
