#include "textflag.h"

// Each loop: acc[j] += x·y for j in 0..11, n ≥ 1 times; chain j lives in
// register j, x in register 12, y in register 13. Rows of acc are 64 bytes.

// func loopAVX512(n int, acc *Accumulators, xy *[2]float32)
// AVX-512F: vfmadd231ps on zmm, 16 lanes.
TEXT ·loopAVX512(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ acc+8(FP), AX
	MOVQ xy+16(FP), BX
	VBROADCASTSS 0(BX), Z12
	VBROADCASTSS 4(BX), Z13
	VMOVUPS 0(AX), Z0
	VMOVUPS 64(AX), Z1
	VMOVUPS 128(AX), Z2
	VMOVUPS 192(AX), Z3
	VMOVUPS 256(AX), Z4
	VMOVUPS 320(AX), Z5
	VMOVUPS 384(AX), Z6
	VMOVUPS 448(AX), Z7
	VMOVUPS 512(AX), Z8
	VMOVUPS 576(AX), Z9
	VMOVUPS 640(AX), Z10
	VMOVUPS 704(AX), Z11
loop:
	VFMADD231PS Z13, Z12, Z0
	VFMADD231PS Z13, Z12, Z1
	VFMADD231PS Z13, Z12, Z2
	VFMADD231PS Z13, Z12, Z3
	VFMADD231PS Z13, Z12, Z4
	VFMADD231PS Z13, Z12, Z5
	VFMADD231PS Z13, Z12, Z6
	VFMADD231PS Z13, Z12, Z7
	VFMADD231PS Z13, Z12, Z8
	VFMADD231PS Z13, Z12, Z9
	VFMADD231PS Z13, Z12, Z10
	VFMADD231PS Z13, Z12, Z11
	DECQ CX
	JNZ loop
	VMOVUPS Z0, 0(AX)
	VMOVUPS Z1, 64(AX)
	VMOVUPS Z2, 128(AX)
	VMOVUPS Z3, 192(AX)
	VMOVUPS Z4, 256(AX)
	VMOVUPS Z5, 320(AX)
	VMOVUPS Z6, 384(AX)
	VMOVUPS Z7, 448(AX)
	VMOVUPS Z8, 512(AX)
	VMOVUPS Z9, 576(AX)
	VMOVUPS Z10, 640(AX)
	VMOVUPS Z11, 704(AX)
	VZEROUPPER
	RET

// func loopAVX512BF16(n int, acc *Accumulators, xy *[2]uint32)
// AVX512-BF16: vdpbf16ps on zmm, 16 lanes, each a dot product of two bf16
// pairs (x0·y0 + x1·y1). xy holds the x pair then the y pair, 32 bits each,
// broadcast to Z30 and Z31. vdpbf16ps has a longer latency than the FMA
// (about 6.5 cycles on Zen 5 with two pipes: 12 registers reach ~92% of its
// throughput, 16 or more all of it), so each chain j runs in two registers,
// Zj (from acc[j]) and Z(j+12) (from 0), each updated once per iteration,
// and acc[j] = Zj + Z(j+12) at the end: 24 dot products in flight.
// Go's assembler has no VDPBF16PS: the instructions are spelled as bytes,
// vdpbf16ps %zmm31, %zmm30, %zmmj (EVEX.512.F3.0F38.W0 52 /r; encodings
// from llvm-mc -show-encoding -mattr=+avx512bf16).
TEXT ·loopAVX512BF16(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ acc+8(FP), AX
	MOVQ xy+16(FP), BX
	VPBROADCASTD 0(BX), Z30
	VPBROADCASTD 4(BX), Z31
	VMOVUPS 0(AX), Z0
	VMOVUPS 64(AX), Z1
	VMOVUPS 128(AX), Z2
	VMOVUPS 192(AX), Z3
	VMOVUPS 256(AX), Z4
	VMOVUPS 320(AX), Z5
	VMOVUPS 384(AX), Z6
	VMOVUPS 448(AX), Z7
	VMOVUPS 512(AX), Z8
	VMOVUPS 576(AX), Z9
	VMOVUPS 640(AX), Z10
	VMOVUPS 704(AX), Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
loopbf16:
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xc7 // VDPBF16PS Z31, Z30, Z0
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xcf // VDPBF16PS Z31, Z30, Z1
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xd7 // VDPBF16PS Z31, Z30, Z2
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xdf // VDPBF16PS Z31, Z30, Z3
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xe7 // VDPBF16PS Z31, Z30, Z4
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xef // VDPBF16PS Z31, Z30, Z5
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xf7 // VDPBF16PS Z31, Z30, Z6
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xff // VDPBF16PS Z31, Z30, Z7
	BYTE $0x62; BYTE $0x12; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xc7 // VDPBF16PS Z31, Z30, Z8
	BYTE $0x62; BYTE $0x12; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xcf // VDPBF16PS Z31, Z30, Z9
	BYTE $0x62; BYTE $0x12; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xd7 // VDPBF16PS Z31, Z30, Z10
	BYTE $0x62; BYTE $0x12; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xdf // VDPBF16PS Z31, Z30, Z11
	BYTE $0x62; BYTE $0x12; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xe7 // VDPBF16PS Z31, Z30, Z12
	BYTE $0x62; BYTE $0x12; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xef // VDPBF16PS Z31, Z30, Z13
	BYTE $0x62; BYTE $0x12; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xf7 // VDPBF16PS Z31, Z30, Z14
	BYTE $0x62; BYTE $0x12; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xff // VDPBF16PS Z31, Z30, Z15
	BYTE $0x62; BYTE $0x82; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xc7 // VDPBF16PS Z31, Z30, Z16
	BYTE $0x62; BYTE $0x82; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xcf // VDPBF16PS Z31, Z30, Z17
	BYTE $0x62; BYTE $0x82; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xd7 // VDPBF16PS Z31, Z30, Z18
	BYTE $0x62; BYTE $0x82; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xdf // VDPBF16PS Z31, Z30, Z19
	BYTE $0x62; BYTE $0x82; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xe7 // VDPBF16PS Z31, Z30, Z20
	BYTE $0x62; BYTE $0x82; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xef // VDPBF16PS Z31, Z30, Z21
	BYTE $0x62; BYTE $0x82; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xf7 // VDPBF16PS Z31, Z30, Z22
	BYTE $0x62; BYTE $0x82; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xff // VDPBF16PS Z31, Z30, Z23
	DECQ CX
	JNZ loopbf16
	VADDPS Z12, Z0, Z0
	VADDPS Z13, Z1, Z1
	VADDPS Z14, Z2, Z2
	VADDPS Z15, Z3, Z3
	VADDPS Z16, Z4, Z4
	VADDPS Z17, Z5, Z5
	VADDPS Z18, Z6, Z6
	VADDPS Z19, Z7, Z7
	VADDPS Z20, Z8, Z8
	VADDPS Z21, Z9, Z9
	VADDPS Z22, Z10, Z10
	VADDPS Z23, Z11, Z11
	VMOVUPS Z0, 0(AX)
	VMOVUPS Z1, 64(AX)
	VMOVUPS Z2, 128(AX)
	VMOVUPS Z3, 192(AX)
	VMOVUPS Z4, 256(AX)
	VMOVUPS Z5, 320(AX)
	VMOVUPS Z6, 384(AX)
	VMOVUPS Z7, 448(AX)
	VMOVUPS Z8, 512(AX)
	VMOVUPS Z9, 576(AX)
	VMOVUPS Z10, 640(AX)
	VMOVUPS Z11, 704(AX)
	VZEROUPPER
	RET

// func loopFMA(n int, acc *Accumulators, xy *[2]float32)
// FMA + AVX: vfmadd231ps on ymm, 8 lanes.
TEXT ·loopFMA(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ acc+8(FP), AX
	MOVQ xy+16(FP), BX
	VBROADCASTSS 0(BX), Y12
	VBROADCASTSS 4(BX), Y13
	VMOVUPS 0(AX), Y0
	VMOVUPS 64(AX), Y1
	VMOVUPS 128(AX), Y2
	VMOVUPS 192(AX), Y3
	VMOVUPS 256(AX), Y4
	VMOVUPS 320(AX), Y5
	VMOVUPS 384(AX), Y6
	VMOVUPS 448(AX), Y7
	VMOVUPS 512(AX), Y8
	VMOVUPS 576(AX), Y9
	VMOVUPS 640(AX), Y10
	VMOVUPS 704(AX), Y11
loop:
	VFMADD231PS Y13, Y12, Y0
	VFMADD231PS Y13, Y12, Y1
	VFMADD231PS Y13, Y12, Y2
	VFMADD231PS Y13, Y12, Y3
	VFMADD231PS Y13, Y12, Y4
	VFMADD231PS Y13, Y12, Y5
	VFMADD231PS Y13, Y12, Y6
	VFMADD231PS Y13, Y12, Y7
	VFMADD231PS Y13, Y12, Y8
	VFMADD231PS Y13, Y12, Y9
	VFMADD231PS Y13, Y12, Y10
	VFMADD231PS Y13, Y12, Y11
	DECQ CX
	JNZ loop
	VMOVUPS Y0, 0(AX)
	VMOVUPS Y1, 64(AX)
	VMOVUPS Y2, 128(AX)
	VMOVUPS Y3, 192(AX)
	VMOVUPS Y4, 256(AX)
	VMOVUPS Y5, 320(AX)
	VMOVUPS Y6, 384(AX)
	VMOVUPS Y7, 448(AX)
	VMOVUPS Y8, 512(AX)
	VMOVUPS Y9, 576(AX)
	VMOVUPS Y10, 640(AX)
	VMOVUPS Y11, 704(AX)
	VZEROUPPER
	RET

// func loopSSE(n int, acc *Accumulators, xy *[2]float32)
// SSE: mulps into a temporary, then addps, on xmm, 4 lanes.
TEXT ·loopSSE(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ acc+8(FP), AX
	MOVQ xy+16(FP), BX
	MOVSS 0(BX), X12
	SHUFPS $0x00, X12, X12
	MOVSS 4(BX), X13
	SHUFPS $0x00, X13, X13
	MOVUPS 0(AX), X0
	MOVUPS 64(AX), X1
	MOVUPS 128(AX), X2
	MOVUPS 192(AX), X3
	MOVUPS 256(AX), X4
	MOVUPS 320(AX), X5
	MOVUPS 384(AX), X6
	MOVUPS 448(AX), X7
	MOVUPS 512(AX), X8
	MOVUPS 576(AX), X9
	MOVUPS 640(AX), X10
	MOVUPS 704(AX), X11
loop:
	MOVAPS X12, X14
	MULPS X13, X14
	ADDPS X14, X0
	MOVAPS X12, X15
	MULPS X13, X15
	ADDPS X15, X1
	MOVAPS X12, X14
	MULPS X13, X14
	ADDPS X14, X2
	MOVAPS X12, X15
	MULPS X13, X15
	ADDPS X15, X3
	MOVAPS X12, X14
	MULPS X13, X14
	ADDPS X14, X4
	MOVAPS X12, X15
	MULPS X13, X15
	ADDPS X15, X5
	MOVAPS X12, X14
	MULPS X13, X14
	ADDPS X14, X6
	MOVAPS X12, X15
	MULPS X13, X15
	ADDPS X15, X7
	MOVAPS X12, X14
	MULPS X13, X14
	ADDPS X14, X8
	MOVAPS X12, X15
	MULPS X13, X15
	ADDPS X15, X9
	MOVAPS X12, X14
	MULPS X13, X14
	ADDPS X14, X10
	MOVAPS X12, X15
	MULPS X13, X15
	ADDPS X15, X11
	DECQ CX
	JNZ loop
	MOVUPS X0, 0(AX)
	MOVUPS X1, 64(AX)
	MOVUPS X2, 128(AX)
	MOVUPS X3, 192(AX)
	MOVUPS X4, 256(AX)
	MOVUPS X5, 320(AX)
	MOVUPS X6, 384(AX)
	MOVUPS X7, 448(AX)
	MOVUPS X8, 512(AX)
	MOVUPS X9, 576(AX)
	MOVUPS X10, 640(AX)
	MOVUPS X11, 704(AX)
	RET

// func loopAMXBF16(n int, buf *amxBuf)
// AMX-BF16: 2×2 register blocking of tdpbf16ps, four 16×16 float32
// accumulator tiles (tmm0–3) updated from two A tiles (tmm4–5) and two B
// tiles (tmm6–7) per iteration, each tdpbf16ps 16·16·32·2 flop. buf holds
// the 64-byte tile configuration (palette 1, all eight tiles 16 rows × 64
// bytes), the A and B tiles and the four C tiles (loaded before the loop,
// stored after it); the configuration is released at the end. Go's
// assembler has no AMX: the instructions are spelled as bytes, each with
// its AT&T form in the comment (encodings from llvm-mc -show-encoding
// -mattr=+amx-tile,+amx-bf16; TestAMXEncodings disassembles them again).
TEXT ·loopAMXBF16(SB), NOSPLIT, $0-16
	MOVQ n+0(FP), CX
	MOVQ buf+8(FP), BX
	MOVQ $64, DX
	MOVQ BX, AX
	BYTE $0xc4; BYTE $0xe2; BYTE $0x78; BYTE $0x49; BYTE $0x00 // ldtilecfg (%rax)
	LEAQ 64(BX), AX
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x4b; BYTE $0x24; BYTE $0x10 // tileloadd (%rax,%rdx), %tmm4
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x4b; BYTE $0x2c; BYTE $0x10 // tileloadd (%rax,%rdx), %tmm5
	LEAQ 1088(BX), AX
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x4b; BYTE $0x34; BYTE $0x10 // tileloadd (%rax,%rdx), %tmm6
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x4b; BYTE $0x3c; BYTE $0x10 // tileloadd (%rax,%rdx), %tmm7
	LEAQ 2112(BX), AX
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x4b; BYTE $0x04; BYTE $0x10 // tileloadd (%rax,%rdx), %tmm0
	LEAQ 3136(BX), AX
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x4b; BYTE $0x0c; BYTE $0x10 // tileloadd (%rax,%rdx), %tmm1
	LEAQ 4160(BX), AX
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x4b; BYTE $0x14; BYTE $0x10 // tileloadd (%rax,%rdx), %tmm2
	LEAQ 5184(BX), AX
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x4b; BYTE $0x1c; BYTE $0x10 // tileloadd (%rax,%rdx), %tmm3
amxloop:
	BYTE $0xc4; BYTE $0xe2; BYTE $0x4a; BYTE $0x5c; BYTE $0xc4 // tdpbf16ps %tmm6, %tmm4, %tmm0
	BYTE $0xc4; BYTE $0xe2; BYTE $0x42; BYTE $0x5c; BYTE $0xcc // tdpbf16ps %tmm7, %tmm4, %tmm1
	BYTE $0xc4; BYTE $0xe2; BYTE $0x4a; BYTE $0x5c; BYTE $0xd5 // tdpbf16ps %tmm6, %tmm5, %tmm2
	BYTE $0xc4; BYTE $0xe2; BYTE $0x42; BYTE $0x5c; BYTE $0xdd // tdpbf16ps %tmm7, %tmm5, %tmm3
	DECQ CX
	JNZ amxloop
	LEAQ 2112(BX), AX
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7a; BYTE $0x4b; BYTE $0x04; BYTE $0x10 // tilestored %tmm0, (%rax,%rdx)
	LEAQ 3136(BX), AX
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7a; BYTE $0x4b; BYTE $0x0c; BYTE $0x10 // tilestored %tmm1, (%rax,%rdx)
	LEAQ 4160(BX), AX
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7a; BYTE $0x4b; BYTE $0x14; BYTE $0x10 // tilestored %tmm2, (%rax,%rdx)
	LEAQ 5184(BX), AX
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7a; BYTE $0x4b; BYTE $0x1c; BYTE $0x10 // tilestored %tmm3, (%rax,%rdx)
	BYTE $0xc4; BYTE $0xe2; BYTE $0x78; BYTE $0x49; BYTE $0xc0 // tilerelease
	RET
