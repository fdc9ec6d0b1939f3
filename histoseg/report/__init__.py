"""What a quantify run reports: area arithmetic, report tables, figures and prediction GeoJSON."""
