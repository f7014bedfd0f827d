"""What the tests (and the benchmarks in bench/) share: real servers on 127.0.0.1, stand-ins
for AWS and the ECS agent, DAG sources, image helpers, and a bounded wait."""
