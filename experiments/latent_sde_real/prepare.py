"""Write the El Nino sea-surface-temperature series shipped with statsmodels as a long CSV.

``statsmodels.datasets.elnino``: monthly mean SST (deg C) of the Nino 1+2 region,
1950-2010 (61 years x 12 months), as packaged by statsmodels from NOAA's Climate Prediction
Center. Nothing is downloaded: the data come from the installed package.

Usage: python experiments/latent_sde_real/prepare.py OUT.csv
"""

from __future__ import annotations

import sys

import pandas as pd

MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


def elnino_long() -> pd.DataFrame:
    """Columns ``date`` (first of each month) and ``sst`` (deg C), in time order."""
    from statsmodels.datasets import elnino

    table = elnino.load_pandas().data
    rows = []
    for _, year in table.iterrows():
        for k, month in enumerate(MONTHS):
            rows.append({"date": f"{int(year['YEAR']):04d}-{k + 1:02d}-01", "sst": year[month]})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    elnino_long().to_csv(sys.argv[1], index=False)
    print(f"wrote {sys.argv[1]}")
