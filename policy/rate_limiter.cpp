// SPDX-License-Identifier: Apache-2.0
#include <algorithm>

#include "policy/policy.h"

namespace gvm::policy {

bool RateLimiter::take(int ruleIndex, const Rate &rate, Clock::time_point now)
{
	if (rate.count == 0 || rate.period.count() <= 0)
		return false;
	double capacity = rate.count;
	auto [it, inserted] = buckets_.try_emplace(ruleIndex);
	Bucket &bucket = it->second;
	if (inserted) {
		// A new bucket starts full: the first `count` requests pass.
		bucket.tokens = capacity;
		bucket.last = now;
	} else if (now > bucket.last) {
		double elapsedMs = std::chrono::duration<double, std::milli>(now - bucket.last).count();
		double refill = elapsedMs * capacity / static_cast<double>(rate.period.count());
		bucket.tokens = std::min(capacity, bucket.tokens + refill);
		bucket.last = now;
	}
	// A reload may have shrunk the rate under an existing bucket.
	bucket.tokens = std::min(bucket.tokens, capacity);
	if (bucket.tokens < 1.0)
		return false;
	bucket.tokens -= 1.0;
	return true;
}

} // namespace gvm::policy
