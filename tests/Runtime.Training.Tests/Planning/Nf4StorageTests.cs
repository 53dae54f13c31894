using Runtime.Training.Planning;

namespace Runtime.Training.Tests.Planning;

public class Nf4StorageTests
{
    [Fact]
    public void One_block_of_statistics_is_counted_by_hand()
    {
        // 16,384 elements = 256 blocks of 64: 8,192 code bytes, 256 absmax bytes, one fp32 second-level absmax,
        // fp32 offset, NF4 table 16 x 4, dynamic map 256 x 4.
        Assert.Equal(8192 + 256 + 4 + 4 + 64 + 1024, Nf4Storage.Bytes(16_384));
        // 65 elements: 33 code bytes (odd count rounds up), 2 blocks.
        Assert.Equal(33 + 2 + 4 + 4 + 64 + 1024, Nf4Storage.Bytes(65));
        Assert.Equal(0, Nf4Storage.Bytes(0));
    }

    [Fact]
    public void A_405b_projection_costs_about_0_516_bytes_a_parameter()
    {
        long n = 53_248L * 16_384;        // gate_proj of Llama 3.1 405B
        double perParam = Nf4Storage.Bytes(n) / (double)n;
        Assert.InRange(perParam, 0.5158, 0.5160);
        Assert.Equal(0.516, Math.Round(perParam, 3));
        // 1/2 for the codes, 1/64 for the 8-bit absmax, 4/(64*256) for the fp32 absmax of the absmax blocks.
        Assert.Equal(0.5 + 1.0 / 64 + 1.0 / 4096, Nf4Storage.BytesPerParameter, 12);
    }
}
