"""`airflow-ecs cost`: the arithmetic on a small template written here, with every expected
figure worked out by hand, and docs/cost.md holding the command's current output."""

import copy
import json
import re
from pathlib import Path

import pytest

from entrypoint import cli
from entrypoint.errors import EXIT_CONFIG, ConfigError
from entrypoint.tools import cost

ROOT = Path(__file__).resolve().parents[2]

# Round figures, so each expected value below is a product one can check on paper.
PRICES = {
    "assumptions": {
        "hours_per_month": 1000, "spot_discount": 0.5, "alb_lcu": 2,
        "cache_engine": "valkey", "redis_node_type": "cache.test", "redis_nodes": 2,
        # 1 GiB x 0.5 / 4 MiB = 128 connections, 3 kept for superusers: 125; 2 GiB: 253.
        "database_classes": [{"class": "db.one", "memory_gib": 1, "baseline_vcpu": 0.2},
                             {"class": "db.two", "memory_gib": 2, "baseline_vcpu": 0.4}],
        "database_memory_share": 0.5, "database_bytes_per_connection": 2**22,
        "database_reserved_connections": 3, "database_task_seconds": 10,
        "database_multi_az": True, "database_storage_gib": 10,
        "log_ingest_gib_per_month": 4,
    },
    "mwaa": {"class": "mw1.test", "included_schedulers": 2, "included_webservers": 2,
             "included_workers": 1, "worker_vcpu": 1},
    "regions": {"xx-test-1": {
        "fargate": {"X86_64": {"vcpu_hour": 0.01, "gib_hour": 0.001},
                    "ARM64": {"vcpu_hour": 0.008, "gib_hour": 0.0008}},
        "alb": {"hour": 0.02, "lcu_hour": 0.005},
        "cache_node_hour": {"valkey": 0.03, "redis": 0.04},
        "database_hour": {"db.one": 0.05, "db.two": 0.1}, "database_cpu_credit_vcpu_hour": 0.5,
        "database_storage_gib_month": 0.1,
        "log_ingest_gib": 0.5, "log_storage_gib_month": 0.03,
        "mwaa": {"environment_hour": 0.4, "worker_hour": 0.05, "scheduler_hour": 0.06,
                 "webserver_hour": 0.07, "database_storage_gib_month": 0.1},
    }},
}


# What `python -m bench fanout` measures: the most connections one task of each role held,
# the database's CPU at rest (one scheduler task) and per task instance run.
MEASURED = {"peak_connections": {"scheduler": 3, "worker": 0, "webserver": 5, "migrate": 2},
            "database_idle_cpu": 0.05, "database_cpu_per_task": 0.01}


def task_definition(cpu, memory, command, platform=None):
    props = {"Cpu": cpu, "Memory": memory, "ContainerDefinitions": [
        {"Name": "sidecar", "Essential": False, "Command": ["run", "metrics"]},
        {"Name": "main", "Command": command},
    ]}
    if platform:
        props["RuntimePlatform"] = {"OperatingSystemFamily": "LINUX",
                                    "CpuArchitecture": platform}
    return {"Type": "AWS::ECS::TaskDefinition", "Properties": props}


# Two worker services, one ARM64 with a base on FARGATE and the rest 1:3 on Spot, scaled
# between 3 and 5; one all on Spot with a fixed count. And a scheduler on a launch type.
STACK = {"Resources": {
    "SchedTd": task_definition("1024", "2048", ["run", "scheduler+dag-processor+triggerer"]),
    "BigWorkerTd": task_definition("2048", "4096", ["run", "worker"], "ARM64"),
    "SmallWorkerTd": task_definition("512", "1024", ["run", "worker", "--", "-q", "small"]),
    "Sched": {"Type": "AWS::ECS::Service", "Properties": {
        "TaskDefinition": {"Ref": "SchedTd"}, "DesiredCount": 2, "LaunchType": "FARGATE"}},
    "BigWorkers": {"Type": "AWS::ECS::Service", "Properties": {
        "TaskDefinition": {"Ref": "BigWorkerTd"},
        "CapacityProviderStrategy": [
            {"CapacityProvider": "FARGATE", "Base": 1, "Weight": 1},
            {"CapacityProvider": "FARGATE_SPOT", "Weight": 3}]}},
    "BigWorkersTarget": {"Type": "AWS::ApplicationAutoScaling::ScalableTarget", "Properties": {
        "MinCapacity": 3, "MaxCapacity": 5,
        "ResourceId": {"Fn::Join": ["/", ["service", {"Ref": "Cluster"},
                                          {"Fn::GetAtt": ["BigWorkers", "Name"]}]]}}},
    "SmallWorkers": {"Type": "AWS::ECS::Service", "Properties": {
        "TaskDefinition": {"Ref": "SmallWorkerTd"}, "DesiredCount": 4,
        "CapacityProviderStrategy": [{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}]}},
    "LoadBalancer": {"Type": "AWS::ElasticLoadBalancingV2::LoadBalancer", "Properties": {}},
}}


def monthly(lines):
    return {line.item: round(line.monthly, 6) for line in lines}


def test_services_are_read_from_the_template():
    got = {s.name: s for s in cost.services(STACK)}
    assert sorted(got) == ["BigWorkers", "Sched", "SmallWorkers"]
    big = got["BigWorkers"]
    assert (big.role, big.vcpu, big.memory_gib, big.arch) == ("worker", 2, 4, "ARM64")
    # MinCapacity 3: 1 on the FARGATE base, the other 2 shared 1:3, so 1.5 on Spot.
    assert (big.count, big.max_count, big.spot_tasks) == (3, 5, 1.5)
    assert (got["SmallWorkers"].count, got["SmallWorkers"].spot_tasks) == (4, 4)
    assert got["SmallWorkers"].arch == "X86_64"
    assert (got["Sched"].role, got["Sched"].count, got["Sched"].spot_tasks) == ("scheduler", 2, 0)
    assert cost.task_memory(STACK) == {"scheduler": 2048, "worker": 4096}


def test_the_bill_of_the_template():
    b = cost.bill(STACK, "xx-test-1", PRICES, MEASURED)
    assert monthly(b.ours) == {
        # 1 vCPU x 0.01 + 2 GiB x 0.001 = 0.012 an hour, 12 a month, 2 tasks.
        "Fargate: Sched (scheduler)": 24.0,
        # ARM64: 2 x 0.008 + 4 x 0.0008 = 0.0192 an hour, 19.2 a month; 3 tasks of which
        # 1.5 on Spot at half price: 19.2 x (3 - 0.75).
        "Fargate: BigWorkers (worker)": 43.2,
        # 0.5 x 0.01 + 1 x 0.001 = 0.006 an hour, 6 a month; 4 tasks all on Spot: 6 x 2.
        "Fargate: SmallWorkers (worker)": 12.0,
        # (0.02 + 2 LCU x 0.005) x 1000 h.
        "Application Load Balancer": 30.0,
        "ElastiCache Valkey (assumed)": 60.0,  # 2 x 0.03 x 1000
        "RDS PostgreSQL (sized below)": 51.0,  # db.one: 0.05 x 1000 + 10 GiB x 0.1
        "CloudWatch Logs (estimate)": 2.12,  # 4 GiB x (0.5 + 0.03)
    }
    assert b.total == pytest.approx(222.32)
    # Every worker task on Spot: BigWorkers' 1.5 on-demand tasks, ARM64, as X86_64 tasks
    # (Fargate Spot runs no other) at half price: 2 x 0.01 + 4 x 0.001 = 0.024 an hour, 24 a
    # month, 12 on Spot; each saves 19.2 - 12.
    assert b.spot_workers == pytest.approx(222.32 - 1.5 * (19.2 - 12))
    # MWAA: 2 schedulers and no web server are included; the workers' 3 x 2 + 4 x 0.5 = 8
    # vCPUs are 8 1-vCPU workers, 7 beyond the included one.
    assert monthly(b.mwaa) == {
        "MWAA mw1.test environment": 400.0,
        "MWAA additional workers": 350.0,  # 7 x 0.05 x 1000
        "MWAA metadata database storage": 1.0,  # 10 GiB x 0.1
        "CloudWatch Logs (estimate)": 2.12,
    }
    assert b.mwaa_total == pytest.approx(753.12)
    # BigWorkers at its maximum of 5: 2 more tasks, 2 x 19.2 on-demand.
    assert b.scale_out == ["BigWorkers scaled out to its maximum of 5 tasks adds 38.40 a "
                           "month on-demand while it lasts"]


def test_extra_mwaa_schedulers_and_web_servers_are_billed():
    stack = copy.deepcopy(STACK)
    stack["Resources"]["Sched"]["Properties"]["DesiredCount"] = 3
    stack["Resources"]["WebTd"] = task_definition("512", "1024", ["run", "webserver"])
    stack["Resources"]["Web"] = {"Type": "AWS::ECS::Service", "Properties": {
        "TaskDefinition": {"Ref": "WebTd"}, "DesiredCount": 4}}
    b = cost.bill(stack, "xx-test-1", PRICES, MEASURED)
    assert monthly(b.mwaa)["MWAA additional schedulers"] == 60.0  # 1 x 0.06 x 1000
    assert monthly(b.mwaa)["MWAA additional web servers"] == 140.0  # 2 x 0.07 x 1000


def test_a_launch_type_of_spot_and_no_count_and_a_load_balancer_outside_the_stack():
    stack = copy.deepcopy(STACK)
    del stack["Resources"]["LoadBalancer"]
    del stack["Resources"]["BigWorkersTarget"]
    props = stack["Resources"]["Sched"]["Properties"]
    props.update({"LaunchType": "FARGATE_SPOT", "LoadBalancers": [{"TargetGroupArn": "x"}]})
    got = {s.name: s for s in cost.services(stack)}
    assert (got["Sched"].spot_tasks, got["BigWorkers"].count) == (2, 1)
    # The target group in the settings belongs to a load balancer the bill still counts.
    lines = monthly(cost.bill(stack, "xx-test-1", PRICES, MEASURED).ours)
    assert lines["Application Load Balancer"] == 30.0


def test_the_database_class_holds_the_connections_and_the_load_at_the_maximum_scale():
    db = cost.database_size(cost.services(STACK), PRICES, MEASURED, "xx-test-1")
    # One task, with the 30% headroom, rounded up: scheduler 3 -> 4, worker 0, migrate 2 -> 3.
    # Schedulers 2 x 4, workers none, one migrate task: 11 connections.
    assert (db.per_task["scheduler"], db.per_task["worker"], db.per_task["migrate"]) == (4, 0, 3)
    assert (db.connections, db.max_connections) == (11, 125)
    # Worker slots at the maximum: BigWorkers 5 x 4 (the images' default concurrency) and
    # SmallWorkers 4 x 4. Load: (2 schedulers x 0.05 + 36 slots x 0.01 / 10 s) x 1.3.
    assert db.slots == 36
    assert db.vcpu == pytest.approx(0.1768)
    assert (db.instance, db.baseline_vcpu, db.surplus_vcpu, db.monthly, db.scale_out) == (
        "db.one", 0.2, 0, 50.0, 0)
    # At rest (2 schedulers, BigWorkers 3 x 4 and SmallWorkers 4 x 4 slots): 0.1664 vCPU.
    assert db.rest_vcpu == pytest.approx((2 * 0.05 + 28 * 0.01 / 10) * 1.3)
    # Twice the database CPU per task: at rest (2 x 0.05 + 28 x 0.02 / 10) x 1.3 = 0.2028
    # vCPU, 0.0028 above db.one's baseline, billed as surplus credits for both instances of
    # the Multi-AZ pair: 0.0028 x 0.5 x 2 x 1000 h = 2.8 a month. At the maximum, 0.2236:
    # 23.6 a month, 20.8 more while it lasts. db.one's 52.8 is below db.two's 100.
    busier = {**MEASURED, "database_cpu_per_task": 0.02}
    db = cost.database_size(cost.services(STACK), PRICES, busier, "xx-test-1")
    assert (db.instance, db.monthly, db.scale_out) == (
        "db.one", pytest.approx(52.8), pytest.approx(20.8))
    b = cost.bill(STACK, "xx-test-1", PRICES, busier)
    assert monthly(b.ours)["RDS PostgreSQL (sized below)"] == pytest.approx(53.8)  # + storage
    assert b.scale_out[-1] == ("The database's load with every service at its maximum adds "
                               "20.80 a month of surplus CPU credits while it lasts")
    # 0.05 per task: at rest 0.312 vCPU; db.one 50 + 0.112 x 0.5 x 2 x 1000 = 162 a month,
    # db.two (0.4 sustained) 100: the larger class is the cheaper.
    busiest = {**MEASURED, "database_cpu_per_task": 0.05}
    db = cost.database_size(cost.services(STACK), PRICES, busiest, "xx-test-1")
    assert (db.instance, db.surplus_vcpu, db.monthly) == ("db.two", 0, 100.0)


def test_webservers_are_budgeted_their_pools_and_a_worker_its_concurrency():
    stack = copy.deepcopy(STACK)
    web = task_definition("512", "1024", ["run", "webserver"])
    web["Properties"]["ContainerDefinitions"][1]["Environment"] = [
        {"Name": "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE", "Value": "20"}]
    stack["Resources"]["WebTd"] = web
    stack["Resources"]["Web"] = {"Type": "AWS::ECS::Service", "Properties": {
        "TaskDefinition": {"Ref": "WebTd"}, "DesiredCount": 2}}
    stack["Resources"]["SmallWorkerTd"]["Properties"]["ContainerDefinitions"][1][
        "Environment"] = [{"Name": "AIRFLOW__CELERY__WORKER_CONCURRENCY", "Value": "6"}]
    db = cost.database_size(cost.services(stack), PRICES, MEASURED, "xx-test-1")
    # A webserver: its pool of 20 and Airflow's overflow of 10, one api-server worker; more
    # than its measured 5 plus headroom. 11 + 2 x 30 connections.
    assert db.per_task["webserver"] == 30
    assert (db.connections, db.instance) == (71, "db.one")
    assert db.slots == 5 * 4 + 4 * 6
    stack["Resources"]["Web"]["Properties"]["DesiredCount"] = 5  # 11 + 150 > 125
    assert cost.database_size(cost.services(stack), PRICES, MEASURED, "xx-test-1").instance \
        == "db.two"
    stack["Resources"]["Web"]["Properties"]["DesiredCount"] = 10  # 11 + 300 > 253
    with pytest.raises(ConfigError, match=r"no database class in prices\.json holds 311 "
                                          r"connections"):
        cost.database_size(cost.services(stack), PRICES, MEASURED, "xx-test-1")


def test_the_database_is_not_sized_without_the_measurements():
    with pytest.raises(ConfigError, match=r"memory-peaks\.json: no 'database_idle_cpu' "
                                          r"measured.*python -m bench fanout"):
        cost.database_size(cost.services(STACK), PRICES,
                           {"peak_connections": MEASURED["peak_connections"]}, "xx-test-1")


def test_airflows_pool_defaults_are_the_installed_airflows():
    from airflow.configuration import conf

    sections = {"AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": ("database", "sql_alchemy_pool_size"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": ("database",
                                                                "sql_alchemy_max_overflow"),
                "AIRFLOW__API__WORKERS": ("api", "workers")}
    assert {name: int(conf.get_default_value(*where)) for name, where in sections.items()} \
        == cost.AIRFLOW_POOL_DEFAULTS


def test_memory_below_the_peak_and_headroom_is_a_warning():
    # Scheduler: 1,600 MiB x 1.3 = 2,080 MiB wanted, 2,048 given. Worker: 3,900 <= 4,096.
    warnings = cost.memory_warnings(STACK, {"scheduler": 1600, "worker": 3000, "migrate": 9})
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: scheduler: task memory 2048 MiB is below the "
                                  "measured peak 1,600.0 MiB plus 30% headroom (2080 MiB)")
    assert cost.memory_warnings(STACK, {"scheduler": 1575, "worker": 3150}) == []


def test_the_report_shows_the_warnings_and_the_ratio():
    text = cost.report(STACK, "xx-test-1", "test.json", PRICES,
                       {"measured": "2026-01-01", "machine": "m", "peak_mib": {"scheduler": 1600},
                        **MEASURED})
    assert "Ours against MWAA: 29.5% on-demand, 28.1% with the workers on Fargate Spot." in text
    assert "warning: scheduler: task memory 2048 MiB" in text
    assert "| scheduler | 2,048 MiB | 1,600.0 MiB | 2,080 MiB |" in text
    assert ("The database, sized for the deployment at its maximum scale: 11 connections "
            "(2 scheduler tasks x 4, 9 worker tasks x 0, and 3 for a migrate task) of the 125 "
            "a db.one allows; 0.18 vCPU of load (36 worker slots), 0.17 at rest, against the "
            "0.2 vCPU its CPU credits sustain") in text


def test_an_unpriced_region_or_architecture_is_named():
    with pytest.raises(ConfigError, match=r"--region xx-none-1: .*xx-test-1"):
        cost.bill(STACK, "xx-none-1", PRICES, MEASURED)
    stack = copy.deepcopy(STACK)
    stack["Resources"]["SchedTd"]["Properties"]["RuntimePlatform"] = {"CpuArchitecture": "MIPS"}
    with pytest.raises(ConfigError, match=r"Sched: RuntimePlatform\.CpuArchitecture 'MIPS'"):
        cost.bill(stack, "xx-test-1", PRICES, MEASURED)


def test_the_price_file_cites_its_pages_and_covers_both_regions():
    prices = cost.load_prices()
    assert set(prices["regions"]) >= {"us-east-1", "eu-west-1"}
    assert all(url.startswith("https://") for url in prices["sources"].values())
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", prices["taken"])
    assert "not fetched" in " ".join(prices["about"])


def test_the_command_prints_the_rendered_deployments_bill(capsys):
    settings = ROOT / "task-definitions" / "settings" / "minimal.json"
    assert cli.main(["cost", "--settings", str(settings), "--region", "us-east-1"]) == 0
    out = capsys.readouterr().out
    assert "minimal.json in us-east-1" in out
    assert "| Fargate: SchedulerService (scheduler) | 2 x 2 vCPU, 4 GiB, X86_64, on-demand |" \
        in out
    assert cli.main(["cost", "--settings", str(settings), "--region", "xx-none-1"]) \
        == EXIT_CONFIG


def test_the_command_compares_memory_with_the_measured_peaks(tmp_path, monkeypatch):
    peaks = tmp_path / "memory-peaks.json"
    peaks.write_text(json.dumps({"measured": "2026-01-01", "machine": "m",
                                 "peak_mib": {"webserver": 1900.0}, **MEASURED}))
    monkeypatch.setattr(cost, "PEAKS_FILE", peaks)
    out = cost.run(ROOT / "task-definitions" / "settings" / "minimal.json", {}, None)
    assert "warning: webserver: task memory 2048 MiB is below the measured peak" in out


def test_docs_hold_the_commands_output():
    docs = (ROOT / "docs" / "cost.md").read_text()
    assert cost.docs() in docs, (
        "docs/cost.md's tables are out of date: paste the output of "
        "`python -m entrypoint.tools.cost` between its markers")


# Fargate's memory sizes (MiB) for each CPU size (units), as its task size table lists them.
FARGATE_MEMORY = {256: (512, 1024, 2048), 512: tuple(range(1024, 4097, 1024)),
                  1024: tuple(range(2048, 8193, 1024)), 2048: tuple(range(4096, 16385, 1024))}


def test_the_smallest_setup_is_sized_from_the_measured_peaks():
    """Each role's task: the smallest memory Fargate offers at its CPU that holds the
    measured peak plus the headroom; a re-measured peak that outgrows it fails here."""
    from entrypoint.tools.ecs.render import render

    peaks = cost.load_peaks()
    assert peaks is not None, "bench/results/memory-peaks.json is missing: python -m bench fanout"
    rendered = render(ROOT / "task-definitions" / "settings" / cost.SMALLEST, {})
    memory = cost.task_memory(rendered.stack)
    assert cost.memory_warnings(rendered.stack, peaks["peak_mib"]) == []
    for role in ("scheduler", "webserver", "worker"):
        cpu = int(rendered.settings[f"{role}_cpu"])
        wanted = peaks["peak_mib"][role] * (1 + cost.HEADROOM)
        assert memory[role] == min(m for m in FARGATE_MEMORY[cpu] if m >= wanted), role
