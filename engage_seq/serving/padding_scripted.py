"""Batching inside the artifact: per-user encoded rows -> the seven ``forward`` tensors,
right-padded (`engage_seq.serving.scripted.ServingModule.predict_events`). Padding never changes
an output: ids 0 are padding and each row's ``length`` says where its events end.

Imports only torch: the artifact must load where engage_seq is not installed.
"""

import torch

# One user's encoded events and aggregates, and the seven forward() inputs (type aliases that
# TorchScript resolves).
UserRow = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
Inputs = tuple[
    torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor
]


def pad_rows(
    rows: list[UserRow],
    width: int,
    n_aggregates: int,
    n_attributes: int,
    n_numeric: int,
    n_time_features: int,
) -> Inputs:
    """Per-user rows -> the seven ``forward`` tensors, right-padded to ``width`` events."""
    n_users = len(rows)
    if n_users == 0:  # an empty request: (0, A), as every other input is (0, ...)
        aggregates = torch.zeros([0, n_aggregates], dtype=torch.float32)
    else:
        aggregates = torch.stack([row[5] for row in rows])  # (B, A)
    if n_users == 1:  # nothing to pad
        ids, channel, attrs, nums, times, _ = rows[0]
        length = torch.tensor([ids.size(0)], dtype=torch.long)
        return (
            ids.unsqueeze(0),
            channel.unsqueeze(0),
            attrs.unsqueeze(0),
            nums.unsqueeze(0),
            times.unsqueeze(0),
            length,
            aggregates,
        )
    event_ids = torch.zeros([n_users, width], dtype=torch.long)
    channel_ids = torch.zeros([n_users, width], dtype=torch.long)
    attribute_ids = torch.zeros([n_users, width, n_attributes], dtype=torch.long)
    numeric_out = torch.zeros([n_users, width, n_numeric], dtype=torch.float32)
    time_out = torch.zeros([n_users, width, n_time_features], dtype=torch.float32)
    lengths = torch.zeros([n_users], dtype=torch.long)
    for user, (ids, channel, attrs, nums, times, _) in enumerate(rows):
        length = int(ids.size(0))
        event_ids[user, :length] = ids
        channel_ids[user, :length] = channel
        attribute_ids[user, :length] = attrs
        numeric_out[user, :length] = nums
        time_out[user, :length] = times
        lengths[user] = length
    return event_ids, channel_ids, attribute_ids, numeric_out, time_out, lengths, aggregates
