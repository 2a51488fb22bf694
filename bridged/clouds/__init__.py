"""Claude on AWS Bedrock and Google Vertex AI (provider types `bedrock`, `vertex`).

- calls.py: what bridged sends the cloud, from what the client sent (either API);
- credentials.py: the SigV4 signature or Vertex access token of each key;
- eventstream.py: Bedrock's event-stream frames, read back into Anthropic's SSE events;
- errors.py and responses.py: errors and answers in the shape the client's API has.
"""
