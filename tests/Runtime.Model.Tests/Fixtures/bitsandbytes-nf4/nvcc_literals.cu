#include <cstdio>
#include <cstring>
__global__ void k(float* o) {
  o[0] = -0.8480964004993439f; o[1] = -0.6106329262256622f; o[2] = 0.1202552504837513f;
  o[3] = 0.5016634166240692f; o[4] = 0.8614784181118011f; o[5] = 0.03979014977812767f;
  o[6] = -0.33967943489551544f; o[7] = 0.2920137718319893f;
}
int main() {
  float h[8] = {-0.8480964004993439f, -0.6106329262256622f, 0.1202552504837513f, 0.5016634166240692f,
                0.8614784181118011f, 0.03979014977812767f, -0.33967943489551544f, 0.2920137718319893f};
  float* d; cudaMalloc(&d, 32); k<<<1,1>>>(d); float r[8]; cudaMemcpy(r, d, 32, cudaMemcpyDeviceToHost);
  for (int i = 0; i < 8; i++) { unsigned a, b; memcpy(&a, &r[i], 4); memcpy(&b, &h[i], 4); printf("%d device %.17g %08x host %.17g %08x\n", i, r[i], a, h[i], b); }
}
