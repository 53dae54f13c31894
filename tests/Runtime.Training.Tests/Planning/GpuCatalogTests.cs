using Runtime.Training.Planning;

namespace Runtime.Training.Tests.Planning;

public class GpuCatalogTests
{
    [Theory]
    [InlineData("NVIDIA H100 80GB HBM3", "h100-80")]      // the product, as the driver names it
    [InlineData("nvidia  h100 80gb hbm3 ", "h100-80")]    // case and spacing do not matter
    [InlineData("NVIDIA H200", "h200")]                   // a shorter name the product starts with
    [InlineData("NVIDIA H100 NVL", "h100-94")]
    [InlineData("NVIDIA B200", "b200")]
    [InlineData("NVIDIA A100-SXM4-80GB", "a100-80")]
    [InlineData("NVIDIA H100", null)]                     // 80GB HBM3 or NVL 94GB: ambiguous
    [InlineData("NVIDIA A100-SXM4-40GB", null)]           // not in the catalogue
    [InlineData("NVIDIA H", null)]                        // a prefix of a word is not a name
    [InlineData("", null)]
    public void A_driver_model_name_finds_its_catalogue_entry(string model, string? name)
    {
        Assert.Equal(name, GpuCatalog.FindByProduct(model)?.Name);
    }
}
