// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include "common/json_rpc.h"

namespace gvm::client {

// One human line for an audit record, e.g.
// "2026-11-23T10:30:08.123456Z deny   http POST api.openai.com:443/v1/chat rule=deny-shadow-models sandbox=sb1"
// In monitor mode a denial reads "would deny". Missing fields are left out;
// never throws on a malformed record.
std::string formatDecision(const rpc::Json &record);

} // namespace gvm::client
