// The one thing LLVM's C API does not tell: which features a target machine
// really enables once its CPU name has implied its own (znver5 implies
// avx512f, x86-64-v3 implies avx2, ...). LLVMGetTargetMachineFeatureString
// returns only the features given by hand.
#include <cstdlib>
#include <cstring>
#include <string>

#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm-c/TargetMachine.h"

extern "C" char *slcTargetMachineEnabledFeatures(LLVMTargetMachineRef ref) {
	auto *tm = reinterpret_cast<llvm::TargetMachine *>(ref);
	const llvm::MCSubtargetInfo *sti = tm->getMCSubtargetInfo();
	std::string out;
	if (sti != nullptr) {
		const llvm::FeatureBitset &bits = sti->getFeatureBits();
		for (const llvm::SubtargetFeatureKV &kv : sti->getAllProcessorFeatures()) {
			if (bits.test(kv.Value)) {
				if (!out.empty())
					out += ',';
				out += '+';
				out += kv.Key;
			}
		}
	}
	char *s = static_cast<char *>(std::malloc(out.size() + 1));
	if (s != nullptr)
		std::memcpy(s, out.c_str(), out.size() + 1);
	return s;
}
