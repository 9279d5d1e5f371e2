"""EC2 machines (`kind = "ec2"`): the provider, its AWS client wrapper and the fleet listing.

boto3 is imported only inside `aws.py`, when a command actually talks to AWS.
"""
