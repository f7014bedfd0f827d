"""Print an ECR registry password for `docker login --password-stdin`.

    python scripts/ecr_login.py --region eu-west-1 | docker login --username AWS \
        --password-stdin <account>.dkr.ecr.<region>.amazonaws.com

The password goes to stdout only (that is the point: a pipe into docker login),
never into an argument list or a log line. Credentials come from boto3's usual
chain (environment, profile, instance or task role).
"""

from __future__ import annotations

import argparse
import base64
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", required=True, help="AWS region of the registry")
    args = parser.parse_args()
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = boto3.client("ecr", region_name=args.region).get_authorization_token()
    except (BotoCoreError, ClientError) as exc:
        print(f"ecr-login: ecr:GetAuthorizationToken in {args.region} failed: {exc}; check the "
              "AWS credentials (AWS_PROFILE or AWS_ACCESS_KEY_ID) and that they allow "
              "ecr:GetAuthorizationToken", file=sys.stderr)
        return 1
    token = response["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    if user != "AWS" or not password:
        print("ecr-login: the authorization token is not in the expected AWS:<password> form",
              file=sys.stderr)
        return 1
    sys.stdout.write(password)
    return 0


if __name__ == "__main__":
    sys.exit(main())
