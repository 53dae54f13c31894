using Runtime.Training.Planning;

namespace Runtime.Training.Tests.Planning;

public class ByteTextTests
{
    [Theory]
    [InlineData(0, "0 B")]
    [InlineData(999, "999 B")]
    [InlineData(311_296, "311.3 kB")]
    [InlineData(16_811_136, "16.8 MB")]
    [InlineData(85_017_493_504, "85.02 GB")]
    public void Bytes_read_in_decimal_units(long bytes, string text) => Assert.Equal(text, ByteText.Format(bytes));

    [Theory]
    [InlineData(65_536, "0.07")]
    [InlineData(7_666_176, "7.67")]
    [InlineData(102_300_672, "102.3")]
    public void Megabytes_keep_two_decimals_under_ten(long bytes, string text) => Assert.Equal(text, ByteText.Megabytes(bytes));
}
