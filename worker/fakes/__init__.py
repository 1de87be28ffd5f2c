"""Stand-ins for AWS services that moto does not emulate well enough, spoken to over real HTTP by real boto3."""
